//! The status report on the bench: what it says at each point of a build's life, that it never
//! changes anything, and that a failed read makes only its own fact unknown.

use std::time::{Duration, Instant};

use prepull::build_finished::{Response, build_label, invoke};
use prepull_bench::emulator::{Fault, FaultKind};
use prepull_bench::scenario::{push_event, sqs_batch};
use serde_json::{Value, json};

use super::build_finished::{Fleet, GROUPS, build, fleet, published};

/// Asks for the report through the function's own entry point and returns it as JSON, checking
/// that it made no mutating call.
async fn status(f: &Fleet) -> Value {
    f.s.bench.emulator.clear_requests();
    let response = invoke(
        &f.s.common,
        &f.settings,
        json!({"action": "status"}),
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .expect("the status report never fails");
    assert!(matches!(response, Response::Status(_)));
    assert_eq!(
        f.s.bench.emulator.mutating_operations(),
        Vec::<String>::new(),
        "the status report makes no mutating call"
    );
    serde_json::to_value(response).unwrap()
}

/// Every fact names its source and carries a value or why it is unknown, never both.
fn assert_every_fact_sourced(report: &Value) {
    let facts = [
        &report["manifest"],
        &report["component"],
        &report["running_build"],
        &report["last_image"],
    ];
    let listed = report["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["refreshes"].as_array().unwrap())
        .chain(report["launch_templates"].as_array().unwrap())
        .chain(
            report["manifest"]["value"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|image| &image["ecr"]),
        );
    for fact in facts.into_iter().chain(listed) {
        assert!(
            fact["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{fact}"
        );
        assert!(
            fact.get("value").is_some() != fact.get("unknown").is_some(),
            "a value or unknown: {fact}"
        );
    }
}

#[tokio::test]
async fn status_reports_the_cache_the_build_the_parameter_and_the_refreshes_without_a_change() {
    let f = fleet("replace").await;
    let first = published(&f, "web 1").await;
    let first_image = first.image.unwrap().to_string();
    let running = build(&f, "web 2").await;
    let web_2 = f.s.common.config.images[0].clone();
    // The tag moves in ECR without an event reaching prepull.
    let web_3 = f.s.push("team/web", "v42", "web 3").await.unwrap();

    let report = status(&f).await;
    assert_every_fact_sourced(&report);

    let images = report["manifest"]["value"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["image"], web_2.to_string());
    assert!(images[0]["cached_digest"].is_string());
    assert!(images[0]["pushed_at"].is_string());
    assert_eq!(
        images[0]["ecr"]["value"],
        json!({"state": "moved", "digest": web_3}),
        "ECR holds a newer digest than the cache"
    );

    let component = &report["component"]["value"];
    assert_eq!(component["version"], "1.0.2");
    assert_eq!(
        component["build"]["value"],
        json!({"arn": running, "status": "BUILDING"}),
        "the latest version is being built"
    );
    let running_build = &report["running_build"]["value"];
    assert_eq!(running_build["arn"], running);
    assert!(running_build["age_seconds"].as_i64().unwrap() >= 0);
    assert_eq!(
        running_build["follow_up"]["value"],
        json!({"follow_up": "not-needed"})
    );

    let last = &report["last_image"]["value"];
    assert_eq!(last["arn"], first_image);
    let amis = last["amis"].as_array().unwrap();
    assert_eq!(
        amis.iter()
            .map(|a| (a["region"].as_str().unwrap(), a["in_parameter"].clone()))
            .collect::<Vec<_>>(),
        [("us-east-1", json!(true)), ("eu-west-1", json!(true))]
    );
    let label = build_label(&first_image);
    for (parameter, ami) in report["parameters"].as_array().unwrap().iter().zip(amis) {
        assert_eq!(parameter["region"], ami["region"]);
        assert_eq!(
            parameter["value"],
            json!({"value": ami["ami"], "version": 1, "labels": [label]})
        );
    }
    let groups: Vec<(&str, &str, i64)> = report["refreshes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap(),
                r["value"]["status"].as_str().unwrap(),
                r["value"]["percentage_complete"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (GROUPS[0], "Successful", 100),
            (GROUPS[1], "Successful", 100)
        ]
    );
    // Both groups' launch template reads the parameter and has room for the AMI.
    for template in report["launch_templates"].as_array().unwrap() {
        assert_eq!(template["value"], json!([]), "{template}");
    }

    // A push during the build: the running build's follow-up builds the new version.
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    prepull::image_pushed::handle(
        &f.s.common,
        sqs_batch(&[push_event("web-3", "team/web", "v42", &web_3, &time)]),
    )
    .await
    .unwrap();
    let report = status(&f).await;
    assert_eq!(
        report["running_build"]["value"]["follow_up"]["value"],
        json!({"follow_up": "builds", "component_version": "1.0.3"})
    );
    assert_eq!(
        report["component"]["value"]["build"]["value"],
        Value::Null,
        "no build carries 1.0.3 yet"
    );
    assert_eq!(
        report["manifest"]["value"][0]["ecr"]["value"],
        json!({"state": "current"})
    );
}

#[tokio::test]
async fn a_failed_read_makes_only_its_own_facts_unknown() {
    let f = fleet("replace").await;
    published(&f, "web 1").await;
    // More failures than the SDK's standard retries (three attempts) absorb.
    for operation in [
        "DescribeInstanceRefreshes",
        "BatchGetImage",
        "DescribeLaunchTemplateVersions",
    ] {
        f.s.bench
            .emulator
            .inject(Fault::new(operation, FaultKind::ServerError, 6));
    }
    let report = status(&f).await;
    assert_every_fact_sourced(&report);
    for refresh in report["refreshes"].as_array().unwrap() {
        let why = refresh["unknown"].as_str().unwrap();
        assert!(why.contains("DescribeInstanceRefreshes"), "{why}");
    }
    for template in report["launch_templates"].as_array().unwrap() {
        let why = template["unknown"].as_str().unwrap();
        assert!(why.contains("DescribeLaunchTemplateVersions"), "{why}");
    }
    let ecr = &report["manifest"]["value"][0]["ecr"];
    assert!(
        ecr["unknown"].as_str().unwrap().contains("BatchGetImage"),
        "{ecr}"
    );
    assert!(report["manifest"]["value"][0]["cached_digest"].is_string());
    assert!(report["last_image"]["value"]["arn"].is_string());
    assert!(
        report["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["value"]["value"].is_string())
    );
}

#[tokio::test]
async fn a_new_install_reports_nothing_built_yet() {
    let f = fleet("replace").await;
    let report = status(&f).await;
    assert_every_fact_sourced(&report);
    let component = &report["component"]["value"];
    assert_eq!(
        (&component["version"], &component["build"]["value"]),
        (&json!("1.0.0"), &Value::Null),
        "the seeded bootstrap version, never built"
    );
    assert_eq!(report["running_build"]["value"], Value::Null);
    assert_eq!(report["last_image"]["value"], Value::Null);
    assert_eq!(
        report["manifest"]["value"][0]["ecr"]["value"]["state"],
        "not-cached"
    );
    let parameters = report["parameters"].as_array().unwrap();
    assert_eq!(parameters.len(), 1, "only the home region is known");
    assert_eq!(parameters[0]["region"], "us-east-1");
    assert_eq!(parameters[0]["value"], Value::Null);
    for refresh in report["refreshes"].as_array().unwrap() {
        assert_eq!(refresh["value"], Value::Null);
    }
}

#[tokio::test]
async fn a_build_carries_the_oldest_push_its_ami_brings_for_the_push_to_ami_latency() {
    let f = fleet("replace").await;
    published(&f, "web 1").await;
    f.s.bench.emulator.clear_requests();
    build(&f, "web 2").await;
    let starts: Vec<Value> =
        f.s.bench
            .emulator
            .requests_of("StartImagePipelineExecution")
            .into_iter()
            .filter(|r| r.succeeded())
            .map(|r| r.params)
            .collect();
    assert_eq!(starts.len(), 1);
    let tag = starts[0]["tags"]["prepull:oldest-new-push"]
        .as_str()
        .expect("the build is tagged");
    let report = status(&f).await;
    let pushed_at = report["manifest"]["value"][0]["pushed_at"]
        .as_str()
        .unwrap();
    let parse = |at: &str| chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert_eq!(
        parse(tag),
        parse(pushed_at),
        "the push of web 2, which the published AMI lacks"
    );
}
