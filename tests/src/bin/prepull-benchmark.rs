//! `make benchmark`: cold starts of prepull's functions beside a bare `lambda_runtime` floor
//! and a Python baseline, the arm64 artifacts' sizes, AWS calls per scenario beside their
//! floors and the round trips each waits for in sequence as AWS answers, how bursts of pushes
//! coalesce, and the in-process cost of rendering and planning.
//! Prints one set of tables and writes them, with the raw figures as JSON, to
//! `bench/results/`. Numbers vary with the machine: compare runs on one machine only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use prepull::core::component::{ComponentState, desired_manifest};
use prepull::core::document::{Runtime, render};
use prepull::core::events::ecr::Push;
use prepull::core::image::{Digest, ImageRef, Registry};
use prepull::core::manifest::{Manifest, PinnedImage};
use prepull_bench::benchmark::{self, CallCount, Coalescing, ColdStart, ColdStartPlan, RoundTrips};
use prepull_bench::moto::workspace_root;
use serde::Serialize;
use serde_json::json;

fn time<F: FnMut()>(iterations: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn images(count: usize) -> Vec<ImageRef> {
    let registry =
        Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").expect("a valid registry");
    (0..count)
        .map(|n| {
            ImageRef::parse(&format!("team/service-{n:02}:live"), &registry).expect("a valid image")
        })
        .collect()
}

fn digest(n: usize) -> Digest {
    Digest::parse(&format!("sha256:{n:064x}")).expect("a valid digest")
}

#[derive(Parser, Debug)]
#[command(about = "Measure prepull: cold starts, artifact sizes, AWS calls, coalescing")]
struct Args {
    /// Cold processes per subject; the table shows their medians.
    #[arg(long, default_value_t = 21)]
    samples: usize,
    /// The host's release binaries (the functions and `lambda-floor`).
    #[arg(long, default_value_os_t = benchmark::release_dir())]
    release_dir: PathBuf,
    /// The arm64 artifacts, as `cargo lambda build --release --arm64` (and again with
    /// `--output-format zip`) leaves them: `<function>/bootstrap` and `bootstrap.zip`.
    #[arg(long, default_value_os_t = target_dir().join("lambda"))]
    lambda_dir: PathBuf,
    /// Where the JSON and Markdown results go.
    #[arg(long, default_value_os_t = workspace_root().join("bench").join("results"))]
    results: PathBuf,
    /// "As AWS answers": each call-count scenario runs once more with this delay added to
    /// every answer of the bench, AWS's own round trip, to count the round trips it waits for
    /// one after another. 0 leaves the mode out.
    #[arg(long, default_value_t = 25)]
    aws_delay_ms: u64,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

const FUNCTIONS: [&str; 3] = ["image-pushed", "patch-day", "build-finished"];

#[derive(Debug, Serialize)]
struct Artifact {
    function: String,
    bootstrap_bytes: u64,
    zip_bytes: u64,
}

fn artifacts(lambda_dir: &Path) -> anyhow::Result<Vec<Artifact>> {
    FUNCTIONS
        .iter()
        .map(|function| {
            let size = |path: PathBuf| {
                std::fs::metadata(&path).map(|m| m.len()).with_context(|| {
                    format!("{} (run `make benchmark`, which builds it)", path.display())
                })
            };
            Ok(Artifact {
                function: (*function).to_owned(),
                bootstrap_bytes: size(lambda_dir.join(function).join("bootstrap"))?,
                zip_bytes: size(lambda_dir.join(function).join("bootstrap.zip"))?,
            })
        })
        .collect()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn cold_table(cold: &[ColdStart], samples: usize) -> String {
    let floor = cold.first();
    let python = cold.last();
    let mut out = format!(
        "\nCold starts: the median of {samples} fresh processes each, under the local Runtime API host, on the bench. \
         \"Bench\" is the time the emulator and moto spent answering the process's AWS calls; \
         \"own\" is exec → response without it.\n\n\
         | subject | event | AWS calls | init | × floor | exec → response | bench | own | vs Python (exec → response / own) | peak RSS |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for row in cold {
        let times_floor = floor.map_or(f64::NAN, |f| row.init_ms / f.init_ms);
        let own = row.response_ms - row.bench_ms;
        let (vs_python, vs_python_own) = python.map_or((f64::NAN, f64::NAN), |p| {
            (
                p.response_ms / row.response_ms,
                (p.response_ms - p.bench_ms) / own,
            )
        });
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} ms | {:.2}× | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}× / {:.1}× | {:.1} MB |\n",
            row.subject,
            row.event,
            row.aws_calls,
            row.init_ms,
            times_floor,
            row.response_ms,
            row.bench_ms,
            own,
            vs_python,
            vs_python_own,
            row.peak_rss_kib as f64 * 1024.0 / 1e6
        ));
    }
    out
}

fn artifact_table(artifacts: &[Artifact]) -> String {
    let mut out = String::from(
        "\nArtifacts: arm64, release, stripped (what `sam build` deploys).\n\n| function | bootstrap | zip |\n|---|---|---|\n",
    );
    for a in artifacts {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            a.function,
            mb(a.bootstrap_bytes),
            mb(a.zip_bytes)
        ));
    }
    out
}

fn call_table(calls: &[CallCount]) -> String {
    let mut out = String::from(
        "\nAWS calls per scenario (in process, on the bench), beside the floor.\n\n| scenario | calls | floor | calls made | above the floor because |\n|---|---|---|---|---|\n",
    );
    for c in calls {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.scenario,
            c.calls,
            c.floor,
            c.operations.join(", "),
            if c.above_floor.is_empty() {
                "—".to_owned()
            } else {
                c.above_floor.join("; ")
            }
        ));
    }
    out
}

fn round_trip_table(rows: &[RoundTrips], delay_ms: u64) -> String {
    let mut out = format!(
        "\nAs AWS answers: each scenario above once more (in process, on a fresh bench), with {delay_ms} ms added to every answer of the bench, \
         as AWS's own round trip. Sequential round trips = (exec → response with the delay − without it) / {delay_ms} ms: \
         the calls the handler waited for one after another (calls made side by side wait out one delay together). \
         \"In sequence in the log\" counts the most calls of the delayed run whose spans do not overlap, without a clock.\n\n\
         | scenario | calls | exec → response | with {delay_ms} ms per answer | sequential round trips | in sequence in the log |\n\
         |---|---|---|---|---|---|\n"
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} | {} |\n",
            row.scenario,
            row.calls,
            row.response_ms,
            row.delayed_response_ms,
            row.round_trips,
            row.calls_in_sequence
        ));
    }
    out
}

fn coalescing_table(results: &[Coalescing]) -> String {
    let mut out = String::from(
        "\nCoalescing: builds started by the pushes, and follow-ups started when that build ended.\n\n| case | builds | follow-ups |\n|---|---|---|\n",
    );
    for c in results {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            c.case, c.builds, c.follow_ups
        ));
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();

    let watched = images(25);
    let manifest: Manifest = watched
        .iter()
        .enumerate()
        .map(|(n, image)| PinnedImage {
            image: image.clone(),
            digest: digest(n),
            pushed_at: None,
        })
        .collect();
    let per_render = time(2_000, || {
        let _ = render(&manifest, Runtime::Containerd, "prepull-cache");
    });
    rows.push((
        "render a 25-image document".into(),
        format!("{:.1} µs", per_render.as_secs_f64() * 1e6),
    ));

    let now = chrono::Utc::now();
    let pushes: Vec<Push> = (0..50)
        .map(|n| Push {
            image: watched[n % 10].clone(),
            digest: digest(1000 + n),
            time: now,
            event_id: format!("e-{n}"),
        })
        .collect();
    let state = ComponentState {
        merged_manifest: manifest.clone(),
        latest_manifest: manifest.clone(),
        ..ComponentState::default()
    };
    let per_plan = time(2_000, || {
        let _ = desired_manifest(&state, &watched, &pushes, &Manifest::new(), &[]);
    });
    rows.push((
        "plan a 50-push batch over 25 images".into(),
        format!("{:.1} µs", per_plan.as_secs_f64() * 1e6),
    ));

    let args = Args::parse();
    // Read first: a missing artifact should stop the run before minutes of measuring.
    let artifacts = artifacts(&args.lambda_dir)?;
    let cold = benchmark::cold_starts(&ColdStartPlan {
        samples: args.samples,
        floor: args.release_dir.join("lambda-floor"),
        functions: args.release_dir.clone(),
        python: workspace_root().join(".venv").join("bin").join("python"),
    })
    .await?;
    let latency = benchmark::bench_latency(args.samples).await?;
    rows.push((
        "one Image Builder call to the emulator (warm connection)".into(),
        format!("{:.2} ms", latency.emulator_call_ms),
    ));
    rows.push((
        "one SSM call to moto, through the emulator (warm connection)".into(),
        format!("{:.2} ms", latency.moto_call_ms),
    ));
    rows.push((
        "image-pushed, a changed push, in this process (warm clients)".into(),
        format!("{:.1} ms", latency.changed_push_in_process_ms),
    ));
    let calls = benchmark::call_counts().await?;
    let round_trips = if args.aws_delay_ms == 0 {
        None
    } else {
        Some(benchmark::round_trips(Duration::from_millis(args.aws_delay_ms), &calls).await?)
    };
    let coalescing = benchmark::coalescing().await?;
    let documents = benchmark::document_sizes()?;

    let mut out = String::new();
    out.push_str(&cold_table(&cold, args.samples));
    out.push_str(&artifact_table(&artifacts));
    out.push_str(&call_table(&calls));
    if let Some(rows) = &round_trips {
        out.push_str(&round_trip_table(rows, args.aws_delay_ms));
    }
    out.push_str(&coalescing_table(&coalescing));
    out.push_str(&format!(
        "\nThe cache document against its image count (typical names: a 20-character repository, a 12-character tag), in characters of Image Builder's {}.\n\n| images | containerd | Docker |\n|---|---|---|\n",
        prepull::core::document::DOCUMENT_LIMIT
    ));
    for (n, size) in documents.iter().enumerate() {
        let label = if n + 1 == documents.len() {
            format!("{} (the most that fit)", size.images)
        } else {
            size.images.to_string()
        };
        out.push_str(&format!(
            "| {label} | {} | {} |\n",
            size.containerd, size.docker
        ));
    }
    out.push_str("\n| in-process measurement | result |\n|---|---|\n");
    for (name, value) in &rows {
        out.push_str(&format!("| {name} | {value} |\n"));
    }
    print!("{out}");

    let rows_json: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    let results = json!({
        "cold_starts": cold,
        "artifacts": artifacts,
        "aws_calls": calls,
        "as_aws_answers": round_trips.as_ref().map(|rows| json!({
            "answer_delay_ms": args.aws_delay_ms,
            "scenarios": rows,
        })),
        "coalescing": coalescing,
        "documents": documents,
        "in_process": rows_json,
    });
    std::fs::create_dir_all(&args.results)?;
    let file = args.results.join("benchmark.json");
    std::fs::write(&file, serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::write(args.results.join("benchmark.md"), &out)?;
    eprintln!("results written to {}", args.results.display());
    Ok(())
}
