//! image-pushed end to end on the bench: the shared handler, the real SDK clients, the
//! emulated Image Builder and moto's ECR. Every test asserts the request log.

use std::time::Duration;

use prepull::core::build::BuildStatus;
use prepull::core::document::{Runtime, read_manifest};
use prepull::image_pushed::{Outcome, Summary, handle};
use prepull_bench::emulator::imagebuilder::SecondWriter;
use prepull_bench::emulator::{Fault, FaultKind, RecordedRequest};
use prepull_bench::scenario::{REGISTRY, Scenario, ecr_event, push_event, sqs_batch};
use prepull_bench::seed::{ComponentReference, PipelineSeed};
use serde_json::Value;

/// Event times after the seeded ECR images were pushed, as real events would be.
fn at(offset_seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn scenario(images: &[&str]) -> Scenario {
    Scenario::start(images, PipelineSeed::default(), &[])
        .await
        .expect("the bench starts and is seeded")
}

fn successful(requests: Vec<RecordedRequest>) -> Vec<RecordedRequest> {
    requests
        .into_iter()
        .filter(RecordedRequest::succeeded)
        .collect()
}

fn operations(s: &Scenario) -> Vec<String> {
    s.bench
        .emulator
        .requests()
        .into_iter()
        .map(|r| r.operation)
        .collect()
}

async fn latest_document(s: &Scenario) -> String {
    let arn = "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/x.x.x";
    let component = s
        .imagebuilder
        .get_component()
        .component_build_version_arn(arn)
        .send()
        .await
        .unwrap();
    component.component().unwrap().data().unwrap().to_owned()
}

#[tokio::test]
async fn one_push_creates_one_component_version_and_starts_one_build() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    let digest = s.push("team/web", "v42", "web v42 build 2").await.unwrap();
    s.bench.emulator.clear_requests();

    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(
        summary.component_version.as_deref(),
        Some("1.0.1"),
        "the seeded bootstrap is 1.0.0"
    );
    assert!(summary.batch_item_failures.is_empty());
    assert_eq!(summary.images.len(), 2, "team/api was resolved through ECR");
    assert!(
        summary
            .images
            .contains(&format!("{REGISTRY}/team/web:v42@{digest}"))
    );

    let creates = successful(s.bench.emulator.requests_of("CreateComponent"));
    assert_eq!(creates.len(), 1);
    let create = &creates[0].params;
    assert_eq!(
        (
            create["semanticVersion"].as_str(),
            create["platform"].as_str()
        ),
        (Some("1.0.1"), Some("Windows"))
    );
    assert!(
        create["description"]
            .as_str()
            .unwrap()
            .contains("push of team/web:v42")
    );
    let document = create["data"].as_str().unwrap();
    let (manifest, runtime) = read_manifest(document).unwrap();
    assert_eq!(runtime, Some(Runtime::Containerd));
    assert_eq!(manifest.hash(), summary.manifest_hash.clone().unwrap());
    assert!(document.contains(&format!("\n        registry {REGISTRY}\n")));
    assert!(document.contains(&format!(
        "\n        team/web v42 {} ",
        digest.trim_start_matches("sha256:")
    )));
    assert_eq!(
        document,
        prepull::core::document::render(&manifest, Runtime::Containerd, "prepull-cache").unwrap(),
        "the expected document, byte for byte"
    );

    let starts = successful(s.bench.emulator.requests_of("StartImagePipelineExecution"));
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].params["tags"]["prepull:manifest"],
        summary.manifest_hash.clone().unwrap()
    );
    assert_eq!(starts[0].params["tags"]["prepull:trigger"], "ecr-push");
    assert_eq!(
        starts[0].params["imagePipelineArn"],
        s.pipeline.pipeline_arn
    );
    assert_eq!(
        s.bench.emulator.requests_of("BatchGetImage").len(),
        2,
        "every watched tag is read beside the component, one call per repository; the pin \
         its tag still names needs nothing more"
    );
    let mutating = s.bench.emulator.mutating_operations();
    assert_eq!(
        mutating,
        ["CreateComponent", "StartImagePipelineExecution"],
        "the recipe uses x.x.x: left alone"
    );
}

#[tokio::test]
async fn fifty_pushes_over_ten_repositories_make_one_version_and_one_build() {
    let images: Vec<String> = (0..10).map(|n| format!("team/svc{n}:live")).collect();
    let image_refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let s = scenario(&image_refs).await;
    let mut events = Vec::new();
    let mut last_digest = Vec::new();
    for round in 0..5 {
        for n in 0..10 {
            let digest = s
                .push(
                    &format!("team/svc{n}"),
                    "live",
                    &format!("svc{n} round {round}"),
                )
                .await
                .unwrap();
            let time = at(round * 10 + n);
            events.push(push_event(
                &format!("e-{round}-{n}"),
                &format!("team/svc{n}"),
                "live",
                &digest,
                &time,
            ));
            if round == 4 {
                last_digest.push(digest);
            }
        }
    }
    s.bench.emulator.clear_requests();
    let summary = handle(&s.common, sqs_batch(&events)).await.unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(
        successful(s.bench.emulator.requests_of("CreateComponent")).len(),
        1
    );
    assert_eq!(
        successful(s.bench.emulator.requests_of("StartImagePipelineExecution")).len(),
        1
    );
    assert_eq!(
        s.bench.emulator.requests_of("BatchGetImage").len(),
        10,
        "one read per repository, beside the component read, however many pushes"
    );
    let (manifest, _) = read_manifest(&latest_document(&s).await).unwrap();
    let digests: Vec<String> = manifest.images().map(|p| p.digest.to_string()).collect();
    assert_eq!(digests, last_digest, "the newest push of each image wins");
}

#[tokio::test]
async fn the_same_batch_twice_makes_no_second_version_and_no_second_build() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = s.push("team/web", "v42", "web v42 build 2").await.unwrap();
    let batch = sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]);
    let first = handle(&s.common, batch.clone()).await.unwrap();
    s.bench.emulator.clear_requests();

    let second = handle(&s.common, batch).await.unwrap();
    assert_eq!(second.outcome, Outcome::UpToDate);
    assert_eq!(second.component_version, first.component_version);
    assert_eq!(
        second.image_build_version_arn,
        first.image_build_version_arn
    );
    assert!(
        s.bench.emulator.mutating_requests().is_empty(),
        "{:?}",
        operations(&s)
    );

    // A re-push of the same digest under the same tag is the same manifest too.
    s.bench.emulator.clear_requests();
    let repush = handle(
        &s.common,
        sqs_batch(&[push_event("e-2", "team/web", "v42", &digest, &at(120))]),
    )
    .await
    .unwrap();
    assert_eq!(repush.outcome, Outcome::UpToDate);
    assert!(s.bench.emulator.mutating_requests().is_empty());
}

#[tokio::test]
async fn a_batch_redelivered_after_its_build_failed_reports_that_build_and_starts_none() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = s.push("team/web", "v42", "web v42 build 2").await.unwrap();
    let batch = sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]);
    let first = handle(&s.common, batch.clone()).await.unwrap();
    assert_eq!(first.outcome, Outcome::BuildStarted);
    let failed = first.image_build_version_arn.clone().unwrap();
    s.bench
        .emulator
        .finish_image(&failed, "FAILED", Some("PullCachedImages failed"))
        .unwrap();
    s.bench.emulator.clear_requests();

    // The same batch again (SQS redelivery, or the DLQ redriven): the same build request,
    // whose client token Image Builder still remembers.
    let again = handle(&s.common, batch).await.unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyAttempted);
    assert_eq!(
        again.image_build_version_arn.as_deref(),
        Some(failed.as_str())
    );
    assert_eq!(again.earlier_build_status, Some(BuildStatus::Failed));
    assert_eq!(again.component_version, first.component_version);
    assert_eq!(
        s.bench.emulator.mutating_operations(),
        ["StartImagePipelineExecution"],
        "no second version; the start repeats the first request"
    );
    let images = s
        .common
        .clients
        .imagebuilder()
        .list_image_pipeline_images()
        .image_pipeline_arn(s.common.config.pipeline.as_str())
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = images
        .image_summary_list()
        .iter()
        .filter_map(|i| i.arn())
        .collect();
    assert_eq!(arns, [failed.as_str()], "Image Builder started nothing new");
    let json = serde_json::to_value(&again).unwrap();
    assert_eq!(json["outcome"], "already-attempted");
    assert_eq!(json["earlier_build_status"], "FAILED");
}

#[tokio::test]
async fn a_push_during_a_build_makes_a_new_version_but_no_new_build() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    let first_digest = s.push("team/web", "v42", "web 2").await.unwrap();
    let first = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &first_digest, &at(0))]),
    )
    .await
    .unwrap();
    let running = first.image_build_version_arn.clone().unwrap();
    s.bench.emulator.clear_requests();

    let api_digest = s.push("team/api", "v7", "api 2").await.unwrap();
    let api_batch = sqs_batch(&[push_event("e-2", "team/api", "v7", &api_digest, &at(60))]);
    s.bench.emulator.clear_requests();
    let second = handle(&s.common, api_batch.clone()).await.unwrap();
    assert_eq!(second.outcome, Outcome::QueuedBehindRunningBuild);
    assert_eq!(second.component_version.as_deref(), Some("1.0.2"));
    assert_eq!(
        second.image_build_version_arn.as_deref(),
        Some(running.as_str())
    );
    let mutating = s.bench.emulator.mutating_operations();
    assert_eq!(mutating, ["CreateComponent"]);

    // Once the build ends, a retry of the same batch starts the build it was queued for.
    s.bench
        .emulator
        .finish_image(&running, "AVAILABLE", None)
        .unwrap();
    s.bench.emulator.clear_requests();
    let retried = handle(&s.common, api_batch).await.unwrap();
    assert_eq!(retried.outcome, Outcome::BuildStarted);
    let mutating = s.bench.emulator.mutating_operations();
    assert_eq!(
        mutating,
        ["StartImagePipelineExecution"],
        "no second version for the same manifest"
    );
}

#[tokio::test]
async fn unwatched_deleted_failed_and_digest_only_records_make_no_aws_call() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = format!("sha256:{}", "a".repeat(64));
    let events = [
        push_event("e-1", "team/other", "v42", &digest, &at(0)),
        push_event("e-2", "team/web", "v43", &digest, &at(0)),
        // A deletion of a tag nobody watches.
        ecr_event(
            "e-3",
            "DELETE",
            "SUCCESS",
            "team/web",
            "v41",
            &digest,
            &at(0),
        ),
        ecr_event("e-4", "PUSH", "FAILURE", "team/web", "v42", &digest, &at(0)),
        push_event("e-5", "team/web", "", &digest, &at(0)),
    ];
    let summary = handle(&s.common, sqs_batch(&events)).await.unwrap();
    assert_eq!(summary.outcome, Outcome::Ignored);
    assert_eq!(summary.ignored.len(), 5);
    assert!(
        summary.batch_item_failures.is_empty(),
        "ignored records are done, not failed"
    );
    assert!(
        s.bench.emulator.requests().is_empty(),
        "not even a read: {:?}",
        operations(&s)
    );

    for fixture in [
        "sqs-ecr-delete.json",
        "sqs-ecr-push-failed.json",
        "sqs-ecr-push-by-digest.json",
    ] {
        let batch = prepull_bench::fixtures::load(fixture).unwrap();
        let summary = handle(&s.common, batch).await.unwrap();
        assert_eq!(summary.outcome, Outcome::Ignored, "{fixture}");
    }
    assert!(s.bench.emulator.requests().is_empty());
}

#[tokio::test]
async fn hostile_names_and_tags_are_rejected_to_the_dead_letter_queue_with_no_mutating_call() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = s.push("team/web", "v42", "web 2").await.unwrap();
    s.bench.emulator.clear_requests();
    let long = "a".repeat(10_000);
    let hostile: Vec<(&str, &str)> = vec![
        ("team/web'; Remove-Item -Recurse C:\\ ; '", "v42"),
        ("team/web\"", "v42"),
        ("team/web;calc", "v42"),
        ("$(Invoke-Expression calc)", "v42"),
        ("`calc`", "v42"),
        ("team/web\nphases:", "v42"),
        ("tëam/web", "v42"),
        (&long, "v42"),
        ("team/web", "v42'; calc; '"),
        ("team/web", "v42$(calc)"),
        ("team/web", "v42`n"),
        ("team/web", "v42\r\n- name: evil"),
        ("team/web", "ünïcode"),
        ("team/web", &long),
    ];
    let mut events: Vec<Value> = hostile
        .iter()
        .enumerate()
        .map(|(n, (repo, tag))| push_event(&format!("h-{n}"), repo, tag, &digest, &at(0)))
        .collect();
    events.push(push_event("ok", "team/web", "v42", &digest, &at(0)));
    let mut bad_digest = push_event("h-digest", "team/web", "v42", "sha256:$(calc)", &at(0));
    bad_digest["detail"]["image-digest"] = Value::String("sha256:' ; calc".to_owned());
    events.push(bad_digest);

    let summary = handle(&s.common, sqs_batch(&events)).await.unwrap();
    assert_eq!(summary.rejected.len(), hostile.len() + 1);
    let failed: Vec<&str> = summary
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let mut expected: Vec<String> = (0..hostile.len()).map(|n| format!("m-{n}")).collect();
    expected.push(format!("m-{}", hostile.len() + 1));
    assert_eq!(
        failed, expected,
        "every hostile record goes to the DLQ; the good one does not"
    );
    for note in &summary.rejected {
        assert!(
            note.reason.contains("detail.repository-name")
                || note.reason.contains("detail.image-tag")
                || note.reason.contains("detail.image-digest"),
            "{}",
            note.reason
        );
        assert!(!note.reason.contains('\n') && note.reason.len() < 400);
    }
    // The good record in the same batch still goes through.
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    let created = &successful(s.bench.emulator.requests_of("CreateComponent"))[0].params["data"];
    for needle in ["calc", "Remove-Item", "ünïcode", "\r"] {
        assert!(
            !created.as_str().unwrap().contains(needle),
            "{needle} reached the document"
        );
    }

    // A batch of only hostile records makes no call at all.
    s.bench.emulator.clear_requests();
    let only_hostile = sqs_batch(&events[..hostile.len()]);
    let summary = handle(&s.common, only_hostile).await.unwrap();
    assert_eq!(summary.outcome, Outcome::Rejected);
    assert!(s.bench.emulator.requests().is_empty());

    // Invoked directly, a hostile event is an error naming the field, and makes no call.
    let error = handle(&s.common, events[0].clone()).await.unwrap_err();
    assert!(
        error.to_string().contains("detail.repository-name"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(s.bench.emulator.requests().is_empty());
}

#[tokio::test]
async fn two_handlers_racing_on_different_batches_lose_nothing() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    // Version 1.0.1 knows both images, so neither racer needs ECR and each keeps the other's
    // old digest: a genuine conflict.
    let (web, api) = built_once_then_both_pushed(&s).await;

    // Both handlers read the state before either writes: hold both writes back a little.
    s.bench.emulator.inject(Fault::slow(
        "CreateComponent",
        Duration::from_millis(300),
        2,
    ));
    let (a, b) = race(&s, &web, &api).await;

    let versions: Vec<String> = successful(s.bench.emulator.requests_of("CreateComponent"))
        .iter()
        .map(|r| r.params["semanticVersion"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        versions,
        ["1.0.2", "1.0.2", "1.0.3"],
        "both wrote 1.0.2; the one that got build 2 merged into 1.0.3"
    );
    let builds = s
        .imagebuilder
        .list_component_build_versions()
        .component_version_arn(
            "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.2",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(builds.component_summary_list().len(), 2);
    let (manifest, _) = read_manifest(&latest_document(&s).await).unwrap();
    let digests: Vec<String> = manifest.images().map(|p| p.digest.to_string()).collect();
    assert_eq!(
        digests,
        [api.clone(), web.clone()],
        "the latest version holds both pushes"
    );
    assert!(
        [&a, &b]
            .iter()
            .any(|x| x.component_version.as_deref() == Some("1.0.3"))
    );
    assert_eq!(
        successful(s.bench.emulator.requests_of("StartImagePipelineExecution")).len(),
        1,
        "one build at a time; the other change waits for build-finished's follow-up"
    );
}

/// The check before a start and the start are two steps: two invocations can both find no
/// build running and both start one (two operators forcing a rebuild at once, here). Read again
/// after its start, the later build yields: it is cancelled, and names the build that goes on.
#[tokio::test]
async fn two_runs_that_both_start_a_build_leave_one_running() {
    use prepull::patch_day::{Outcome as PatchDayOutcome, PatchDaySettings};
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    s.bench.emulator.clear_requests();
    // Both list the pipeline's builds (none running) before either start lands.
    s.bench.emulator.inject(Fault::slow(
        "StartImagePipelineExecution",
        Duration::from_millis(1500),
        2,
    ));
    let settings = PatchDaySettings {
        offset_days: 1,
        max_image_age_days: 35,
    };
    let force = |reason: &str| serde_json::json!({"force": true, "reason": reason});
    let now = chrono::Utc::now();
    let (a, b) = tokio::join!(
        prepull::patch_day::handle(&s.common, settings, force("operator a"), "request-a", now),
        prepull::patch_day::handle(&s.common, settings, force("operator b"), "request-b", now),
    );
    let (a, b) = (a.expect("no error"), b.expect("no error"));
    let starts = successful(s.bench.emulator.requests_of("StartImagePipelineExecution"));
    assert_eq!(starts.len(), 2, "both started: the race this test is about");
    let cancels = successful(s.bench.emulator.requests_of("CancelImageCreation"));
    assert_eq!(cancels.len(), 1, "exactly one yields");
    let mut outcomes = [a.outcome, b.outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [PatchDayOutcome::BuildRunning, PatchDayOutcome::BuildStarted]
    );
    let going_on = [&a, &b]
        .iter()
        .find_map(|x| x.image_build_version_arn.clone())
        .unwrap();
    let yielded = if a.outcome == PatchDayOutcome::BuildRunning {
        &a
    } else {
        &b
    };
    assert_eq!(
        yielded.running_build.as_ref(),
        Some(&going_on),
        "the one that yielded names the build that goes on"
    );
    let images = s
        .imagebuilder
        .list_image_pipeline_images()
        .image_pipeline_arn(s.common.config.pipeline.as_str())
        .send()
        .await
        .unwrap();
    let statuses: Vec<(String, String)> = images
        .image_summary_list()
        .iter()
        .map(|i| {
            (
                i.arn().unwrap_or_default().to_owned(),
                i.state()
                    .and_then(|s| s.status())
                    .unwrap()
                    .as_str()
                    .to_owned(),
            )
        })
        .collect();
    let running: Vec<&(String, String)> =
        statuses.iter().filter(|(_, s)| s == "BUILDING").collect();
    assert_eq!(running.len(), 1, "{statuses:?}");
    assert_eq!(
        running[0].0.as_str(),
        going_on.as_str(),
        "the first build started goes on"
    );
    assert!(
        statuses.iter().any(|(_, s)| s == "CANCELLED"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_and_succeed() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = s.push("team/web", "v42", "web 2").await.unwrap();
    s.bench.emulator.clear_requests();
    s.bench
        .emulator
        .inject(Fault::new("CreateComponent", FaultKind::Throttle, 1));
    s.bench
        .emulator
        .inject(Fault::new("CreateComponent", FaultKind::ServerError, 1));
    s.bench.emulator.inject(Fault::new(
        "StartImagePipelineExecution",
        FaultKind::Throttle,
        1,
    ));
    s.bench.emulator.inject(Fault::new(
        "StartImagePipelineExecution",
        FaultKind::Unavailable,
        1,
    ));
    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    let creates = s.bench.emulator.requests_of("CreateComponent");
    assert_eq!(
        creates.iter().map(|r| r.status).collect::<Vec<_>>(),
        [400, 500, 200]
    );
    assert!(
        creates
            .iter()
            .all(|r| r.params["clientToken"] == creates[2].params["clientToken"]),
        "one token across retries"
    );
    let starts = s.bench.emulator.requests_of("StartImagePipelineExecution");
    assert_eq!(
        starts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [400, 503, 200]
    );

    // When the SDK's retries run out, the handler fails the batch as retryable; the queue's
    // retry then finds the version made and does only what is missing.
    let next = s.push("team/web", "v42", "web 3").await.unwrap();
    s.bench.emulator.inject(Fault::new(
        "StartImagePipelineExecution",
        FaultKind::ServerError,
        3,
    ));
    let image = summary.image_build_version_arn.unwrap();
    s.bench
        .emulator
        .finish_image(&image, "AVAILABLE", None)
        .unwrap();
    let batch = sqs_batch(&[push_event("e-2", "team/web", "v42", &next, &at(180))]);
    let error = handle(&s.common, batch.clone()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    s.bench.emulator.clear_requests();
    let retried = handle(&s.common, batch).await.unwrap();
    assert_eq!(retried.outcome, Outcome::BuildStarted);
    let mutating = s.bench.emulator.mutating_operations();
    assert_eq!(mutating, ["StartImagePipelineExecution"]);
}

#[tokio::test]
async fn a_pinned_recipe_gets_a_new_version_and_the_pipeline_keeps_every_other_field() {
    let seed = PipelineSeed {
        reference: ComponentReference::Pinned,
        ..PipelineSeed::default()
    };
    let s = Scenario::start(&["team/web:v42"], seed, &[("PREPULL_RUNTIME", "docker")])
        .await
        .unwrap();
    let before = s
        .imagebuilder
        .get_image_pipeline()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await
        .unwrap();
    let before = before.image_pipeline().unwrap().clone();
    let digest = s.push("team/web", "v42", "web 2").await.unwrap();
    s.bench.emulator.clear_requests();

    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    let new_recipe = summary.recipe_arn.clone().expect("a new recipe version");
    assert!(
        new_recipe.ends_with("/prepull-windows-cache-recipe/1.0.1"),
        "{new_recipe}"
    );
    let recipe = s
        .imagebuilder
        .get_image_recipe()
        .image_recipe_arn(&new_recipe)
        .send()
        .await
        .unwrap();
    let recipe = recipe.image_recipe().unwrap();
    let arns: Vec<&str> = recipe
        .components()
        .iter()
        .map(|c| c.component_arn())
        .collect();
    assert_eq!(
        arns[1],
        summary.component_build_version_arn.as_deref().unwrap(),
        "the new component build is swapped in"
    );
    assert!(
        arns[0].ends_with("/update-windows/x.x.x"),
        "the other component is kept"
    );
    let old = s
        .imagebuilder
        .get_image_recipe()
        .image_recipe_arn(&s.pipeline.recipe_arn)
        .send()
        .await
        .unwrap();
    let old = old.image_recipe().unwrap();
    assert_eq!(
        (
            recipe.parent_image(),
            recipe.working_directory(),
            recipe.description()
        ),
        (
            old.parent_image(),
            old.working_directory(),
            old.description()
        )
    );

    let after = s
        .imagebuilder
        .get_image_pipeline()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await
        .unwrap();
    let after = after.image_pipeline().unwrap();
    assert_eq!(after.image_recipe_arn(), Some(new_recipe.as_str()));
    assert_eq!(after.description(), before.description());
    assert_eq!(
        after.distribution_configuration_arn(),
        before.distribution_configuration_arn()
    );
    assert_eq!(
        after.infrastructure_configuration_arn(),
        before.infrastructure_configuration_arn()
    );
    assert_eq!(after.status(), before.status());
    assert_eq!(
        after.image_tests_configuration(),
        before.image_tests_configuration()
    );
    assert_eq!(
        after.enhanced_image_metadata_enabled(),
        before.enhanced_image_metadata_enabled()
    );
    let mutating = s.bench.emulator.mutating_operations();
    assert_eq!(
        mutating,
        [
            "CreateComponent",
            "CreateImageRecipe",
            "UpdateImagePipeline",
            "StartImagePipelineExecution"
        ]
    );
    let document = &s.bench.emulator.requests_of("CreateComponent")[0].params["data"];
    assert!(
        document.as_str().unwrap().contains("docker pull"),
        "PREPULL_RUNTIME=docker renders for Docker"
    );
}

#[tokio::test]
async fn a_version_listcomponents_does_not_show_yet_is_still_found() {
    let s = scenario(&["team/web:v42"]).await;
    let first = s.push("team/web", "v42", "web 2").await.unwrap();
    handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &first, &at(0))]),
    )
    .await
    .unwrap();
    // ListComponents lags behind the version just created.
    s.bench.emulator.set_component_list_lag(1);
    let second = s.push("team/web", "v42", "web 3").await.unwrap();
    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-2", "team/web", "v42", &second, &at(5))]),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.component_version.as_deref(),
        Some("1.0.2"),
        "not a second build of 1.0.1"
    );
    let builds = s
        .imagebuilder
        .list_component_build_versions()
        .component_version_arn(
            "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(builds.component_summary_list().len(), 1);
}

#[tokio::test]
async fn a_pinned_recipe_whose_next_version_exists_moves_to_the_one_after() {
    let seed = PipelineSeed {
        reference: ComponentReference::Pinned,
        ..PipelineSeed::default()
    };
    let s = Scenario::start(&["team/web:v42"], seed, &[]).await.unwrap();
    // Someone already made recipe 1.0.1 (say, by hand) without pointing the pipeline at it.
    let old = s
        .imagebuilder
        .get_image_recipe()
        .image_recipe_arn(&s.pipeline.recipe_arn)
        .send()
        .await
        .unwrap();
    let old = old.image_recipe().unwrap();
    s.imagebuilder
        .create_image_recipe()
        .name(old.name().unwrap())
        .semantic_version("1.0.1")
        .parent_image(old.parent_image().unwrap())
        .set_components(Some(old.components().to_vec()))
        .send()
        .await
        .unwrap();
    let digest = s.push("team/web", "v42", "web 2").await.unwrap();
    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    assert!(
        summary.recipe_arn.as_deref().unwrap().ends_with("/1.0.2"),
        "{:?}",
        summary.recipe_arn
    );
    let pipeline = s
        .imagebuilder
        .get_image_pipeline()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        pipeline.image_pipeline().unwrap().image_recipe_arn(),
        summary.recipe_arn.as_deref()
    );
    assert_eq!(summary.outcome, Outcome::BuildStarted);
}

/// A multi-platform manifest list is pushed by digest, and its event has no `image-tag` field
/// at all: ignored like an empty tag, not rejected into the dead-letter queue.
#[tokio::test]
async fn a_push_without_an_image_tag_field_is_ignored_not_rejected() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = format!("sha256:{}", "e".repeat(64));
    let mut event = push_event("e-list", "team/web", "v42", &digest, &at(0));
    event["detail"].as_object_mut().unwrap().remove("image-tag");
    let summary = handle(&s.common, sqs_batch(&[event])).await.unwrap();
    assert_eq!(summary.outcome, Outcome::Ignored);
    assert!(summary.batch_item_failures.is_empty(), "{summary:?}");
    assert_eq!(summary.ignored.len(), 1);
    assert!(summary.ignored[0].reason.contains("push by digest"));
    assert!(s.bench.emulator.requests().is_empty(), "no AWS call");
}

/// Where Image Builder refuses a second writer of a component version
/// (`ResourceInUseException`) instead of making build `/2`, the racer that lost re-reads and
/// writes the merged manifest as the next version: nothing is lost either way.
#[tokio::test]
async fn racing_writers_converge_when_image_builder_refuses_the_second() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    s.bench
        .emulator
        .set_component_second_writer(SecondWriter::ResourceInUse);
    let (web, api) = built_once_then_both_pushed(&s).await;
    s.bench.emulator.inject(Fault::slow(
        "CreateComponent",
        Duration::from_millis(300),
        2,
    ));
    let (a, b) = race(&s, &web, &api).await;
    let creates: Vec<(String, Option<String>)> = s
        .bench
        .emulator
        .requests_of("CreateComponent")
        .into_iter()
        .map(|r| {
            (
                r.params["semanticVersion"].as_str().unwrap().to_owned(),
                r.error_code,
            )
        })
        .collect();
    assert_eq!(
        creates,
        [
            ("1.0.2".to_owned(), None),
            (
                "1.0.2".to_owned(),
                Some("ResourceInUseException".to_owned())
            ),
            ("1.0.3".to_owned(), None),
        ],
        "the second writer of 1.0.2 was refused and wrote 1.0.3"
    );
    let (manifest, _) = read_manifest(&latest_document(&s).await).unwrap();
    let digests: Vec<String> = manifest.images().map(|p| p.digest.to_string()).collect();
    assert_eq!(digests, [api, web], "the latest version holds both pushes");
    assert!(
        [&a, &b]
            .iter()
            .any(|x| x.component_version.as_deref() == Some("1.0.3"))
    );
}

/// Image Builder is eventually consistent: right after CreateComponent, a recipe's `x.x.x`
/// can still resolve to the previous version when a build starts. image-pushed waits until it
/// resolves to the version it wrote, so the build caches the manifest it is labelled with.
#[tokio::test]
async fn a_build_starts_only_once_the_new_version_resolves() {
    let s = scenario(&["team/web:v42"]).await;
    let seeded_build = s.pipeline.component_build_arn.clone();
    s.bench
        .emulator
        .set_component_read_lag(Duration::from_millis(1500));
    // The seeded version, made a moment ago, becomes visible first.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let digest = s.push("team/web", "v42", "web 2").await.unwrap();
    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    let written = summary.component_build_version_arn.clone().unwrap();
    assert_ne!(written.as_str(), seeded_build);
    let image = s
        .imagebuilder
        .get_image()
        .image_build_version_arn(summary.image_build_version_arn.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let used: Vec<&str> = image
        .image()
        .and_then(|i| i.image_recipe())
        .map(|r| r.components().iter().map(|c| c.component_arn()).collect())
        .unwrap_or_default();
    assert!(
        used.contains(&written.as_str()),
        "the build resolved x.x.x to the version just written: {used:?}"
    );
    let polls = s.bench.emulator.requests_of("GetComponent").len();
    assert!(
        polls >= 2,
        "it looked more than once while the version was not visible"
    );
}

/// A standard SQS queue keeps no order and event times are whole seconds: when one batch holds
/// two digests of one tag pushed in the same second, the record that comes last is not the
/// push that came last. ECR's current digest for the tag decides, with one BatchGetImage.
#[tokio::test]
async fn pushes_of_one_tag_in_one_second_are_decided_by_ecr() {
    let s = scenario(&["team/web:v42"]).await;
    let earlier = s.push("team/web", "v42", "web 2").await.unwrap();
    let current = s.push("team/web", "v42", "web 3").await.unwrap();
    s.bench.emulator.clear_requests();
    // The newer push's record arrives first.
    let summary = handle(
        &s.common,
        sqs_batch(&[
            push_event("e-3", "team/web", "v42", &current, &at(60)),
            push_event("e-2", "team/web", "v42", &earlier, &at(60)),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.images,
        [format!("{REGISTRY}/team/web:v42@{current}")],
        "ECR's current digest, not the last record's"
    );
    assert_eq!(s.bench.emulator.requests_of("BatchGetImage").len(), 1);
}

/// ListImagePipelineImages is eventually consistent: a build started a moment ago may be
/// missing from it, so a second push finds no build running and starts another. Its own build
/// number tells it a build started before it; it waits for that one to be listed, and yields.
#[tokio::test]
async fn a_build_the_listing_does_not_show_yet_still_keeps_one_build_at_a_time() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    s.bench
        .emulator
        .set_image_list_lag(Duration::from_millis(1500));
    let web = s.push("team/web", "v42", "web 2").await.unwrap();
    let first = handle(
        &s.common,
        sqs_batch(&[push_event("e-web", "team/web", "v42", &web, &at(60))]),
    )
    .await
    .unwrap();
    assert_eq!(first.outcome, Outcome::BuildStarted);
    let api = s.push("team/api", "v7", "api 2").await.unwrap();
    let second = handle(
        &s.common,
        sqs_batch(&[push_event("e-api", "team/api", "v7", &api, &at(61))]),
    )
    .await
    .unwrap();
    assert_eq!(
        (second.outcome, second.image_build_version_arn.clone()),
        (
            Outcome::QueuedBehindRunningBuild,
            first.image_build_version_arn.clone()
        ),
        "the second start found the first once it was listed, and yielded to it"
    );
    assert_eq!(
        successful(s.bench.emulator.requests_of("CancelImageCreation")).len(),
        1
    );
}

/// Version 1.0.1 knows both images (built once, AVAILABLE), then both are pushed again: two
/// racers on these pushes need no ECR, and each keeps the other's old digest: a genuine
/// conflict. Returns the new digests of team/web and team/api.
async fn built_once_then_both_pushed(s: &Scenario) -> (String, String) {
    let web_1 = s.push("team/web", "v42", "web 1").await.unwrap();
    let first = handle(
        &s.common,
        sqs_batch(&[push_event("e-0", "team/web", "v42", &web_1, &at(0))]),
    )
    .await
    .unwrap();
    s.bench
        .emulator
        .finish_image(&first.image_build_version_arn.unwrap(), "AVAILABLE", None)
        .unwrap();
    let web = s.push("team/web", "v42", "web 2").await.unwrap();
    let api = s.push("team/api", "v7", "api 2").await.unwrap();
    s.bench.emulator.clear_requests();
    (web, api)
}

/// Two image-pushed invocations at once, one for each push.
async fn race(s: &Scenario, web: &str, api: &str) -> (Summary, Summary) {
    let (a, b) = tokio::join!(
        handle(
            &s.common,
            sqs_batch(&[push_event("e-web", "team/web", "v42", web, &at(60))])
        ),
        handle(
            &s.common,
            sqs_batch(&[push_event("e-api", "team/api", "v7", api, &at(61))])
        ),
    );
    (a.expect("no error"), b.expect("no error"))
}

/// team/api:v7 as the summary lists it, `image@digest`.
fn pinned_api(summary: &Summary) -> String {
    summary
        .images
        .iter()
        .find(|i| i.contains("team/api:v7"))
        .unwrap()
        .clone()
}

/// Two watched images built once (AVAILABLE); returns the push summary.
async fn built_once(s: &Scenario) -> Summary {
    let digest = s.push("team/web", "v42", "web, first build").await.unwrap();
    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(summary.images.len(), 2);
    s.bench
        .emulator
        .finish_image(
            summary.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();
    s.bench.emulator.clear_requests();
    summary
}

#[tokio::test]
async fn a_deleted_watched_tag_leaves_the_manifest_at_once() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    let api = pinned_api(&built_once(&s).await);
    let api_digest = api.rsplit('@').next().unwrap().to_owned();
    s.delete("team/api", "v7").await.unwrap();

    let summary = handle(
        &s.common,
        sqs_batch(&[ecr_event(
            "d-1",
            "DELETE",
            "SUCCESS",
            "team/api",
            "v7",
            &api_digest,
            &at(1),
        )]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(
        summary.removed,
        std::slice::from_ref(&api),
        "the reason is in the summary"
    );
    assert!(summary.unresolved.is_empty(), "{:?}", summary.unresolved);
    assert_eq!(summary.images.len(), 1);
    assert!(summary.images[0].contains("team/web:v42"));
    assert!(
        !latest_document(&s).await.contains("team/api"),
        "the new version no longer pulls it"
    );
    let starts = successful(s.bench.emulator.requests_of("StartImagePipelineExecution"));
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].params["tags"]["prepull:component-version"],
        summary.component_version.clone().unwrap()
    );
}

#[tokio::test]
async fn a_build_never_starts_with_a_digest_ecr_no_longer_has() {
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    let api = pinned_api(&built_once(&s).await);
    // A lifecycle policy expires team/api:v7; its event never reaches prepull.
    s.delete("team/api", "v7").await.unwrap();
    let digest = s
        .push("team/web", "v42", "web, second build")
        .await
        .unwrap();

    let summary = handle(
        &s.common,
        sqs_batch(&[push_event("e-2", "team/web", "v42", &digest, &at(2))]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(summary.removed, std::slice::from_ref(&api));
    assert_eq!(summary.images.len(), 1);
    // The lost digest is found before any write: the one version written is without
    // team/api, and it is the one built.
    let versions = successful(s.bench.emulator.requests_of("CreateComponent"));
    assert_eq!(versions.len(), 1);
    let reads: Vec<serde_json::Value> = s
        .bench
        .emulator
        .requests_of("BatchGetImage")
        .into_iter()
        .map(|r| r.params["imageIds"].clone())
        .collect();
    assert_eq!(
        reads.len(),
        3,
        "every watched tag, one read per repository, then the pin whose tag is gone, by digest"
    );
    assert!(reads.contains(&serde_json::json!([{"imageTag": "v7"}])));
    assert!(reads.contains(&serde_json::json!([{"imageTag": "v42"}])));
    assert_eq!(
        reads[2],
        serde_json::json!([{"imageDigest": api.rsplit('@').next().unwrap()}])
    );
    let starts = successful(s.bench.emulator.requests_of("StartImagePipelineExecution"));
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].params["tags"]["prepull:component-version"],
        summary.component_version.clone().unwrap()
    );
    assert_eq!(
        starts[0].params["tags"]["prepull:manifest"],
        summary.manifest_hash.clone().unwrap()
    );
    assert!(!latest_document(&s).await.contains("team/api"));
}

#[tokio::test]
async fn with_every_watched_image_gone_nothing_is_built_and_the_summary_says_why() {
    let s = scenario(&["team/web:v42"]).await;
    let digest = s.push("team/web", "v42", "web, first build").await.unwrap();
    let first = handle(
        &s.common,
        sqs_batch(&[push_event("e-1", "team/web", "v42", &digest, &at(0))]),
    )
    .await
    .unwrap();
    s.bench
        .emulator
        .finish_image(
            first.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();
    s.delete("team/web", "v42").await.unwrap();
    s.bench.emulator.clear_requests();
    let summary = handle(
        &s.common,
        sqs_batch(&[ecr_event(
            "d-1",
            "DELETE",
            "SUCCESS",
            "team/web",
            "v42",
            &digest,
            &at(1),
        )]),
    )
    .await
    .unwrap();
    assert_eq!(summary.outcome, Outcome::NothingToCache);
    assert!(
        summary
            .reason
            .as_deref()
            .unwrap()
            .contains("no watched image is in ECR"),
        "{:?}",
        summary.reason
    );
    assert!(summary.images.is_empty());
    assert!(
        successful(s.bench.emulator.requests_of("StartImagePipelineExecution")).is_empty(),
        "no build of an empty cache"
    );
}

#[tokio::test]
async fn a_throttled_confirmation_is_retried_and_an_exhausted_one_starts_nothing_until_redelivery()
{
    let s = scenario(&["team/web:v42", "team/api:v7"]).await;
    built_once(&s).await;
    let digest = s
        .push("team/web", "v42", "web, second build")
        .await
        .unwrap();
    let batch = sqs_batch(&[push_event("e-2", "team/web", "v42", &digest, &at(2))]);

    // More throttles than the SDK's three attempts absorb (the two repositories are read side
    // by side, three attempts each): the invocation fails, retryably, before it writes or
    // starts anything (ECR is read before the version is written).
    s.bench
        .emulator
        .inject(Fault::new("BatchGetImage", FaultKind::Throttle, 6));
    let error = handle(&s.common, batch.clone()).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("BatchGetImage"), "{error}");
    assert!(successful(s.bench.emulator.requests_of("StartImagePipelineExecution")).is_empty());
    assert!(successful(s.bench.emulator.requests_of("CreateComponent")).is_empty());

    // SQS delivers the batch again; two throttles are within the SDK's retries.
    s.bench
        .emulator
        .inject(Fault::new("BatchGetImage", FaultKind::Throttle, 2));
    let summary = handle(&s.common, batch).await.unwrap();
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert!(summary.removed.is_empty(), "team/api is still in ECR");
    assert_eq!(
        successful(s.bench.emulator.requests_of("CreateComponent")).len(),
        1,
        "the retry writes the one version"
    );
    assert_eq!(
        successful(s.bench.emulator.requests_of("StartImagePipelineExecution")).len(),
        1
    );
}

/// Eight invocations at once on overlapping batches, with ListComponents lagging behind the
/// writes: every push ends up in the latest version, no two versions carry the same manifest,
/// and at most one build runs. A batch whose invocation gives up (contention) is delivered
/// again, as SQS would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_invocations_at_once_on_overlapping_batches_lose_nothing() {
    let images = ["team/a:v1", "team/b:v1", "team/c:v1", "team/d:v1"];
    let s = scenario(&images).await;
    // An established cache first (its version long listed), then ListComponents lagging one
    // build behind every write from here on.
    let digest = s.push("team/a", "v1", "team/a first").await.unwrap();
    let first = handle(
        &s.common,
        sqs_batch(&[push_event("e-0", "team/a", "v1", &digest, &at(-60))]),
    )
    .await
    .unwrap();
    assert_eq!(first.component_version.as_deref(), Some("1.0.1"));
    s.bench.emulator.set_component_list_lag(1);
    let mut batches = Vec::new();
    let mut newest: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    // The pushes happen after the established version read ECR, one second apart in push
    // order, as their events say.
    let first_event = chrono::Utc::now() + chrono::Duration::seconds(1);
    for n in 0..8_usize {
        let mut events = Vec::new();
        for (k, reference) in [images[n % 4], images[(n + 1) % 4]].into_iter().enumerate() {
            let (repository, tag) = reference.split_once(':').unwrap();
            let digest = s
                .push(repository, tag, &format!("{reference} batch {n}"))
                .await
                .unwrap();
            let time = (first_event + chrono::Duration::seconds(i64::try_from(2 * n + k).unwrap()))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            events.push(push_event(
                &format!("e-{n}-{k}"),
                repository,
                tag,
                &digest,
                &time,
            ));
            newest.insert(reference, digest);
        }
        batches.push(sqs_batch(&events));
    }
    s.bench.emulator.clear_requests();

    let runs = batches.iter().map(|batch| {
        let common = &s.common;
        async move {
            for _ in 0..5 {
                match handle(common, batch.clone()).await {
                    Ok(summary) => return summary,
                    Err(error) if error.is_retryable() => {}
                    Err(error) => panic!("{error}"),
                }
            }
            panic!("a batch kept failing")
        }
    });
    let summaries = futures_util::future::join_all(runs).await;
    assert_eq!(summaries.len(), 8);

    let (manifest, _) = read_manifest(&latest_document(&s).await).unwrap();
    for (reference, digest) in &newest {
        let pinned = manifest
            .images()
            .find(|p| reference.starts_with(&format!("{}:", p.image.repository)))
            .unwrap_or_else(|| panic!("{reference} is in the latest version"));
        assert_eq!(
            pinned.digest.as_str(),
            digest,
            "{reference}: the newest push"
        );
    }
    // Each version's content is its first build (a colliding write becomes build 2 of a
    // version, or is refused, and is merged into the next): no two versions may carry the
    // same manifest.
    // prepull numbers versions 1.0.0, 1.0.1, …: read each one's first build.
    let mut seen: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for patch in 0.. {
        let first_build = format!(
            "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.{patch}/1"
        );
        let component = match s
            .imagebuilder
            .get_component()
            .component_build_version_arn(&first_build)
            .send()
            .await
        {
            Ok(component) => component,
            // The version after the last one does not exist.
            Err(_) => break,
        };
        let (manifest, _) = read_manifest(component.component().unwrap().data().unwrap()).unwrap();
        if let Some(earlier) = seen.insert(manifest.hash(), first_build.clone()) {
            panic!("{earlier} and {first_build} carry the same manifest");
        }
    }
    assert!(seen.len() >= 2, "versions were written: {seen:?}");
    let running = s
        .imagebuilder
        .list_image_pipeline_images()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_summary_list()
        .iter()
        .filter(|i| {
            i.state().and_then(|st| st.status()).is_some_and(|st| {
                [
                    "PENDING",
                    "CREATING",
                    "BUILDING",
                    "TESTING",
                    "DISTRIBUTING",
                    "INTEGRATING",
                ]
                .contains(&st.as_str())
            })
        })
        .count();
    assert!(running <= 1, "{running} builds running");
}
