//! Measures what prepull's speed and memory depend on, on this machine, and prints a table:
//! rendering the cache document, planning a burst of pushes, and image-pushed end to end on
//! the local bench (so AWS round trips are loopback, not network). Run with
//! `make benchmark`; numbers vary with the machine, so compare runs on one machine only.

use std::time::{Duration, Instant};

use prepull::core::component::{ComponentState, desired_manifest};
use prepull::core::document::{Runtime, render};
use prepull::core::events::ecr::Push;
use prepull::core::image::{Digest, ImageRef, Registry};
use prepull::core::manifest::{Manifest, PinnedImage};
use prepull_bench::scenario::{Scenario, push_event, sqs_batch};
use prepull_bench::seed::PipelineSeed;

fn time<F: FnMut()>(iterations: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
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
        let _ = desired_manifest(&state, &watched, &pushes, &Manifest::new());
    });
    rows.push((
        "plan a 50-push batch over 25 images".into(),
        format!("{:.1} µs", per_plan.as_secs_f64() * 1e6),
    ));

    let names: Vec<String> = (0..10).map(|n| format!("team/svc{n}:live")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let scenario = Scenario::start(&refs, PipelineSeed::default(), &[]).await?;
    let rounds = 10;
    let mut handler_time = Duration::ZERO;
    let mut calls = 0;
    for round in 0..rounds {
        let mut events = Vec::new();
        for n in 0..10 {
            for push in 0..5 {
                let digest = scenario
                    .push(
                        &format!("team/svc{n}"),
                        "live",
                        &format!("svc{n} round {round} push {push}"),
                    )
                    .await?;
                let time = (chrono::Utc::now() + chrono::Duration::seconds(push))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                events.push(push_event(
                    &format!("r{round}-{n}-{push}"),
                    &format!("team/svc{n}"),
                    "live",
                    &digest,
                    &time,
                ));
            }
        }
        let builds = scenario
            .imagebuilder
            .list_image_pipeline_images()
            .image_pipeline_arn(&scenario.pipeline.pipeline_arn)
            .send()
            .await?;
        for image in builds.image_summary_list() {
            if image
                .state()
                .and_then(|s| s.status())
                .is_some_and(|s| s.as_str() == "BUILDING")
            {
                scenario
                    .bench
                    .emulator
                    .finish_image(image.arn().unwrap_or_default(), "AVAILABLE", None)
                    .map_err(|e| anyhow::anyhow!(e.message))?;
            }
        }
        scenario.bench.emulator.clear_requests();
        let batch = sqs_batch(&events);
        let start = Instant::now();
        prepull::image_pushed::handle(&scenario.common, batch).await?;
        handler_time += start.elapsed();
        calls += scenario.bench.emulator.requests().len();
    }
    rows.push((
        "image-pushed, 50 pushes over 10 images, on the bench".into(),
        format!(
            "{:.1} ms per batch, {} AWS calls",
            (handler_time / rounds).as_secs_f64() * 1e3,
            calls / rounds as usize
        ),
    ));
    rows.push((
        "peak resident memory (handler, emulator and client in one process)".into(),
        format!("{} KiB", peak_rss_kib()),
    ));

    println!("| measurement | result |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    Ok(())
}
