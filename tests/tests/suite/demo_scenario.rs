//! The demo's story (`make demo`) as a test: the three real function binaries under the local
//! Runtime API, against the bench. `cargo test --workspace` builds the binaries first.

use std::collections::BTreeMap;

use prepull::core::metrics::{
    FUNCTION_DIMENSION, Metric, NAMESPACE, PIPELINE_DIMENSION, REGION_DIMENSION,
};
use prepull_bench::bench::Bench;
use prepull_bench::demo::{self, Options, Report};
use prepull_bench::emf;
use prepull_bench::emulator::RecordedRequest;
use prepull_bench::iam;
use prepull_bench::runtime_api::function_access_key;

async fn run(options: &Options) -> (Report, String) {
    let (report, output, _) = run_logged(options).await;
    (report, output)
}

/// The demo, and every call the bench answered during it (the steps clear the request log;
/// the history keeps it all).
async fn run_logged(options: &Options) -> (Report, String, Vec<RecordedRequest>) {
    let bench = Bench::start().await.unwrap();
    let mut out = Vec::new();
    let report = demo::run(&bench, options, &mut out).await.unwrap();
    (
        report,
        String::from_utf8(out).unwrap(),
        bench.emulator.history(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_story_passes_every_step_with_the_default_images() {
    let (report, output, requests) = run_logged(&Options::default()).await;
    assert!(report.passed(), "{}\n{output}", report.table());
    assert_least_privilege(&requests);
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

/// Grants the template gives a function that the demo's story does not call, each with why:
/// a path the story does not take (and the suite test that takes it), or a dependent action
/// AWS checks on prepull's behalf (Service Authorization Reference). A grant that is neither
/// called in the story nor listed here fails the check: the template would grant more than
/// prepull needs.
const NOT_IN_THE_STORY: &[(&[&str], &str, &str)] = &[
    (
        &["image-pushed", "patch-day", "build-finished"],
        "imagebuilder:CancelImageCreation",
        "the later of two builds started at once cancels its own (suite: image_pushed)",
    ),
    (
        &["image-pushed", "patch-day", "build-finished"],
        "imagebuilder:TagResource",
        "dependent action of StartImagePipelineExecution and CreateComponent with tags",
    ),
    (
        &["image-pushed", "patch-day"],
        "imagebuilder:CreateImageRecipe",
        "an existing pipeline whose recipe pins the component version (suite: image_pushed, pinned reference)",
    ),
    (
        &["image-pushed", "patch-day"],
        "imagebuilder:UpdateImagePipeline",
        "the same path: the pipeline takes the new recipe",
    ),
    (
        &["image-pushed", "patch-day"],
        "imagebuilder:GetInfrastructureConfiguration",
        "dependent action of UpdateImagePipeline",
    ),
    (
        &["image-pushed", "patch-day"],
        "imagebuilder:GetDistributionConfiguration",
        "dependent action of UpdateImagePipeline",
    ),
    (
        &["image-pushed", "patch-day"],
        "imagebuilder:GetWorkflow",
        "dependent action of UpdateImagePipeline",
    ),
    (
        &["patch-day"],
        "imagebuilder:CreateComponent",
        "patch day with a changed digest (suite: patch_day); the story's runs are an ordinary day and a dry run",
    ),
    (
        &["patch-day"],
        "imagebuilder:StartImagePipelineExecution",
        "patch day and forced runs that are not dry runs (suite: patch_day)",
    ),
    (
        &["build-finished"],
        "autoscaling:CancelInstanceRefresh",
        "a running refresh replaced (suite: build_finished, RefreshInProgress=replace)",
    ),
    (
        &["build-finished"],
        "ssm:UnlabelParameterVersion",
        "the 101st parameter version while the oldest is labelled (suite: build_finished)",
    ),
    (
        &["build-finished"],
        "ec2:DescribeImages",
        "Parameter Store validates an aws:ec2:image value with the writer's permission to describe the AMI",
    ),
];

/// Each function's calls in the story, signed with its own access key as in Lambda, against
/// its role in `template.yaml`: every call is granted, and every grant is called (here or on a
/// path named in [`NOT_IN_THE_STORY`]). Every statement on `*` says why AWS needs it.
fn assert_least_privilege(requests: &[RecordedRequest]) {
    let root = prepull_bench::moto::workspace_root();
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let grants = iam::grants(&template).unwrap();
    let calls = iam::calls_by_caller(requests);
    let mut report = Vec::new();
    for function in ["image-pushed", "patch-day", "build-finished"] {
        let called = calls
            .get(&function_access_key(function))
            .cloned()
            .unwrap_or_default();
        assert!(
            !called.is_empty(),
            "{function} made calls with its own key: {:?}",
            calls.keys().collect::<Vec<_>>()
        );
        for action in &called {
            if !grants.allows(function, action) {
                report.push(format!(
                    "{function} calls {action}, which its role does not grant"
                ));
            }
        }
        for granted in grants.actions(function) {
            let used = called.iter().any(|a| {
                *a == granted
                    || granted
                        .strip_suffix('*')
                        .is_some_and(|prefix| a.starts_with(prefix))
            });
            let elsewhere = NOT_IN_THE_STORY
                .iter()
                .any(|(functions, a, _)| functions.contains(&function) && *a == granted);
            if !used && !elsewhere {
                report.push(format!(
                    "{function}'s role grants {granted}, which it never calls"
                ));
            }
            if used && elsewhere {
                report.push(format!(
                    "{function} calls {granted} in the story: drop it from NOT_IN_THE_STORY"
                ));
            }
        }
        for statement in grants.by_function[function].iter().filter(|s| s.wildcard) {
            let sid = statement.sid.as_deref().unwrap_or_default();
            let block = template
                .split(&format!("Sid: {sid}\n"))
                .nth(1)
                .and_then(|rest| rest.split("- Sid:").next())
                .unwrap_or_default();
            if sid.is_empty() || !block.contains("Wildcard:") {
                report.push(format!(
                    "{function}: statement {sid:?} on Resource \"*\" does not say why (a \"# Wildcard:\" comment)"
                ));
            }
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
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
