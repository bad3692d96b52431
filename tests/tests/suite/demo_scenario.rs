//! The demo's story (`make demo`) as a test: the three real function binaries under the local
//! Runtime API, against the bench. `cargo test --workspace` builds the binaries first.

use prepull_bench::bench::Bench;
use prepull_bench::demo::{self, Options, Report};

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
    for image in ["windows/web", "windows/worker", "windows/agent"] {
        assert!(
            report.document.contains(&format!(
                "Save-CachedImage '123456789012.dkr.ecr.us-east-1.amazonaws.com/{image}' 'sha256:"
            )),
            "{image} is in the rendered document:\n{}",
            report.document
        );
    }
    assert!(report.document.contains("# prepull-runtime: containerd"));
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
    assert!(report.document.contains("/team/api' 'sha256:"));
    assert!(report.document.contains("/team/web' 'sha256:"));
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
