//! The demo's story (`make demo`) as a test: the three real function binaries under the local
//! Runtime API, against the bench. `cargo test --workspace` builds the binaries first.

use std::collections::BTreeMap;

use prepull::core::metrics::{
    FUNCTION_DIMENSION, Metric, NAMESPACE, PIPELINE_DIMENSION, REGION_DIMENSION,
};
use prepull_bench::bench::Bench;
use prepull_bench::demo::{self, Options, Report};
use prepull_bench::emf;

async fn run(options: &Options) -> (Report, String) {
    let bench = Bench::start().await.unwrap();
    let mut out = Vec::new();
    let report = demo::run(&bench, options, &mut out).await.unwrap();
    (report, String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_story_passes_every_step_with_the_default_images() {
    let (report, output) = run(&Options::default()).await;
    assert!(report.passed(), "{}\n{output}", report.table());
    let steps: Vec<_> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        steps,
        [
            "burst of two pushes",
            "a push while the build runs",
            "the build becomes AVAILABLE",
            "the follow-up build completes",
            "status",
            "scheduled run, not patch day",
            "forced dry run",
            "rollback",
            "hostile tag",
        ]
    );
    for step in &report.steps {
        assert!(
            output.contains(&serde_json::to_string_pretty(&step.summary).unwrap()),
            "each step prints its function's JSON summary: {}",
            step.name
        );
    }
    assert!(
        report
            .document
            .contains("\n        registry 123456789012.dkr.ecr.us-east-1.amazonaws.com\n")
    );
    for image in ["windows/web", "windows/worker", "windows/agent"] {
        assert!(
            report
                .document
                .contains(&format!("\n        {image} ltsc2022 ")),
            "{image} is in the rendered document:\n{}",
            report.document
        );
    }
    assert!(report.document.contains("# prepull-runtime: containerd"));
    assert_metrics(&report);
    assert_no_secret(&report, &output);
}

/// The credentials the functions run with appear nowhere they print: logs, summaries, the
/// demo's output, the rendered document.
fn assert_no_secret(report: &Report, output: &str) {
    let secret = prepull_bench::bench::SECRET_ACCESS_KEY;
    let mut printed: Vec<&str> = vec![output, &report.document];
    for (_, lines) in &report.logs {
        printed.extend(lines.iter().map(String::as_str));
    }
    let summaries: Vec<String> = report.steps.iter().map(|s| s.summary.to_string()).collect();
    printed.extend(summaries.iter().map(String::as_str));
    assert!(printed.len() > 20, "the functions printed something");
    for text in printed {
        assert!(!text.contains(secret), "the secret key leaked: {text}");
    }
}

/// The functions' EMF lines parse as CloudWatch reads them, carry the function and pipeline
/// dimensions, and count what the story did.
fn assert_metrics(report: &Report) {
    let mut totals: BTreeMap<(String, &str), f64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut lines = 0;
    for (function, output) in &report.logs {
        for line in output.iter().filter(|l| emf::is_emf(l)) {
            lines += 1;
            let data = emf::read_line(line).unwrap_or_else(|e| panic!("{e:#}: {line}"));
            for datum in data {
                let metric = Metric::ALL
                    .into_iter()
                    .find(|m| m.name() == datum.name)
                    .unwrap_or_else(|| panic!("an unknown metric: {line}"));
                assert_eq!(datum.namespace, NAMESPACE);
                assert_eq!(
                    datum.unit.as_deref(),
                    Some(metric.unit().as_str()),
                    "{line}"
                );
                let dimensions = &datum.dimensions[0];
                assert_eq!(dimensions[FUNCTION_DIMENSION], *function, "{line}");
                assert_eq!(dimensions[PIPELINE_DIMENSION], "prepull-windows-cache");
                assert_eq!(
                    dimensions.contains_key(REGION_DIMENSION),
                    metric == Metric::Publishes,
                    "only publishes are per region: {line}"
                );
                if metric == Metric::PushToAmiLatency {
                    latencies.extend(datum.values.iter().copied());
                }
                *totals.entry((function.clone(), metric.name())).or_default() +=
                    datum.values.iter().sum::<f64>();
            }
        }
    }
    assert!(lines > 0, "the functions wrote EMF lines");
    let total = |function: &str, metric: Metric| {
        totals
            .get(&(function.to_owned(), metric.name()))
            .copied()
            .unwrap_or_default()
    };
    let expected = [
        // Steps 1, 2 and 9: two pushes in a burst, one during the build, one hostile.
        ("image-pushed", Metric::PushesSeen, 4.0),
        ("image-pushed", Metric::PushesRejected, 1.0),
        ("image-pushed", Metric::PushesIgnored, 0.0),
        ("image-pushed", Metric::ComponentVersionsWritten, 2.0),
        ("image-pushed", Metric::BuildsStarted, 1.0),
        ("image-pushed", Metric::BuildsQueued, 1.0),
        // Steps 3, 4 and 8: two builds end AVAILABLE, the second is the first's follow-up;
        // each publish and the rollback write the parameter and start a refresh.
        ("build-finished", Metric::BuildsSucceeded, 2.0),
        ("build-finished", Metric::BuildsStarted, 1.0),
        ("build-finished", Metric::Publishes, 3.0),
        ("build-finished", Metric::RefreshesStarted, 3.0),
        ("build-finished", Metric::RefreshesFailed, 0.0),
        ("build-finished", Metric::RefreshesMisconfigured, 0.0),
        // Steps 6 and 7: an ordinary day and a dry run change nothing.
        ("patch-day", Metric::BuildsStarted, 0.0),
        ("patch-day", Metric::ComponentVersionsWritten, 0.0),
    ];
    for (function, metric, count) in expected {
        assert!(
            (total(function, metric) - count).abs() < f64::EPSILON,
            "{function} {}: {} (expected {count}); all: {totals:?}",
            metric.name(),
            total(function, metric)
        );
    }
    assert_eq!(
        latencies.len(),
        2,
        "both builds' publishes measure push to AMI: {latencies:?}"
    );
    assert!(
        latencies.iter().all(|s| (0.0..600.0).contains(s)),
        "seconds from the pushes minutes ago: {latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_takes_the_users_images_and_runtime() {
    let options = Options {
        images: vec!["team/api:v7".to_owned(), "team/web:v42".to_owned()],
        runtime: "docker".to_owned(),
        ..Options::default()
    };
    let (report, output) = run(&options).await;
    assert!(report.passed(), "{}\n{output}", report.table());
    assert!(report.document.contains("# prepull-runtime: docker"));
    assert!(report.document.contains("\n        team/api v7 "));
    assert!(report.document.contains("\n        team/web v42 "));
    assert!(
        report
            .document
            .contains("docker login --username AWS --password-stdin")
    );
    assert!(!report.document.contains("windows/web"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_refuses_a_single_image_before_touching_the_bench() {
    let options = Options {
        images: vec!["team/api:v7".to_owned()],
        ..Options::default()
    };
    let bench = Bench::start().await.unwrap();
    let error = demo::run(&bench, &options, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("at least two images"), "{error}");
    assert!(bench.emulator.requests().is_empty());
}
