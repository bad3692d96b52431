//! patch-day end to end on the bench. Every scenario runs as a dry run first, which must make
//! no mutating call and return the plan the real run then carries out.

use chrono::{DateTime, Utc};
use prepull::core::build::BuildStatus;
use prepull::patch_day::{Outcome, PatchDaySettings, Summary, handle};
use prepull_bench::scenario::Scenario;
use prepull_bench::seed::PipelineSeed;
use serde_json::{Value, json};

const PARENT_PARAMETER: &str = "/prepull/test/windows-server-2022-eks";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn schedule() -> Value {
    json!({"source": "schedule"})
}

fn force(reason: &str) -> Value {
    json!({"force": true, "reason": reason})
}

fn with_dry_run(input: &Value) -> Value {
    let mut input = input.clone();
    input["dry_run"] = json!(true);
    input
}

async fn set_parent(s: &Scenario, ami: &str) {
    let ssm = aws_sdk_ssm::Client::new(&s.bench.sdk_config().await);
    ssm.put_parameter()
        .name(PARENT_PARAMETER)
        .value(ami)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

/// A pipeline whose parent image is an `ssm:` parameter, already built once on
/// 2026-12-01 (before December's patch day, 2026-12-09), with nothing changed since.
async fn established() -> Scenario {
    let seed = PipelineSeed {
        parent_image: format!("ssm:{PARENT_PARAMETER}"),
        ..PipelineSeed::default()
    };
    let s = Scenario::start(&["team/web:v42", "team/api:v7"], seed, &[])
        .await
        .unwrap();
    set_parent(&s, "ami-0aaaaaaaaaaaaaaa1").await;
    let first = run(&s, schedule(), "setup", "2026-12-01T06:00:00Z").await;
    assert_eq!(first.outcome, Outcome::BuildStarted);
    assert_eq!(
        first.reasons,
        ["manifest-changed", "max-image-age"],
        "a new install: bootstrap component, no image yet"
    );
    s.bench
        .emulator
        .finish_image(
            first.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();
    s.bench.emulator.clear_requests();
    s
}

fn settings() -> PatchDaySettings {
    PatchDaySettings {
        offset_days: 1,
        max_image_age_days: 35,
    }
}

/// One run at `now`, with the emulated services' clock at the same time.
async fn run(s: &Scenario, input: Value, request_id: &str, now: &str) -> Summary {
    s.bench.emulator.set_clock(Some(at(now)));
    handle(&s.common, settings(), input, request_id, at(now))
        .await
        .expect("the run succeeds")
}

/// A dry run, then the real run: the dry run changes nothing and predicts the real run.
async fn dry_then_real(s: &Scenario, input: Value, request_id: &str, now: &str) -> Summary {
    let before = s.bench.emulator.mutating_operations();
    let dry = run(s, with_dry_run(&input), request_id, now).await;
    assert!(dry.dry_run);
    assert_eq!(
        s.bench.emulator.mutating_operations(),
        before,
        "a dry run makes no mutating call"
    );
    assert_eq!(dry.image_build_version_arn, None);
    let real = run(s, input, request_id, now).await;
    assert_eq!(
        (dry.outcome, &dry.reasons, &dry.component_version),
        (real.outcome, &real.reasons, &real.component_version)
    );
    assert_eq!(
        dry.plan, real.plan,
        "the dry run's plan is what the real run did"
    );
    real
}

fn start_calls(s: &Scenario) -> Vec<Value> {
    s.bench
        .emulator
        .requests_of("StartImagePipelineExecution")
        .into_iter()
        .filter(|r| r.succeeded())
        .map(|r| r.params)
        .collect()
}

#[tokio::test]
async fn a_lost_push_is_found_and_built_by_the_scheduled_run() {
    let s = established().await;
    let digest = s
        .push(
            "team/web",
            "v42",
            "web, pushed while EventBridge dropped the event",
        )
        .await
        .unwrap();
    s.bench.emulator.clear_requests();
    let summary = dry_then_real(&s, schedule(), "r-1", "2026-12-02T06:00:00Z").await;
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(summary.reasons, ["manifest-changed"]);
    assert_eq!(summary.component_version.as_deref(), Some("1.0.2"));
    assert!(
        summary
            .images
            .iter()
            .any(|i| i.ends_with(&format!("team/web:v42@{digest}")))
    );
    assert_eq!(
        s.bench.emulator.mutating_operations(),
        ["CreateComponent", "StartImagePipelineExecution"]
    );
    let start = &start_calls(&s)[0];
    assert_eq!(start["tags"]["prepull:trigger"], "manifest-changed");
    assert_eq!(
        start["tags"]["prepull:parent-image"], "ami-0aaaaaaaaaaaaaaa1",
        "the parent's value is recorded"
    );
    assert_eq!(
        start["tags"]["prepull:oldest-new-push"], "2026-12-02T06:00:00Z",
        "the push-to-AMI latency starts when the lost push was found: the other image was \
         published already"
    );
}

#[tokio::test]
async fn not_patch_day_and_nothing_changed_makes_no_mutating_call() {
    let s = established().await;
    let summary = dry_then_real(&s, schedule(), "r-1", "2026-12-02T06:00:00Z").await;
    assert_eq!(summary.outcome, Outcome::UpToDate);
    assert!(summary.reasons.is_empty());
    let evaluated: Vec<(&str, bool)> = summary
        .conditions
        .iter()
        .map(|c| (c.name, c.holds))
        .collect();
    assert_eq!(
        evaluated,
        [
            ("manifest-changed", false),
            ("patch-day", false),
            ("parent-image", false),
            ("max-image-age", false),
            ("forced", false)
        ]
    );
    assert!(
        summary.conditions[1].detail.contains("2026-12-09"),
        "{}",
        summary.conditions[1].detail
    );
    assert!(s.bench.emulator.mutating_operations().is_empty());
    assert_eq!(
        s.bench.emulator.requests_of("BatchGetImage").len(),
        4,
        "both dry and real runs re-read both digests"
    );
}

#[tokio::test]
async fn patch_day_builds_once_however_often_the_schedule_runs() {
    let s = established().await;
    let first = dry_then_real(&s, schedule(), "r-1", "2026-12-09T06:00:00Z").await;
    assert_eq!(
        (first.outcome, first.reasons.clone()),
        (Outcome::BuildStarted, vec!["patch-day"])
    );
    let second = dry_then_real(&s, schedule(), "r-2", "2026-12-09T07:00:00Z").await;
    assert_eq!(second.outcome, Outcome::BuildRunning);
    assert_eq!(second.running_build, first.image_build_version_arn);
    s.bench
        .emulator
        .finish_image(
            first.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();
    let third = dry_then_real(&s, schedule(), "r-3", "2026-12-09T20:00:00Z").await;
    assert_eq!(
        third.outcome,
        Outcome::UpToDate,
        "built on patch day: done for the month"
    );
    assert_eq!(start_calls(&s).len(), 1);
    assert_eq!(start_calls(&s)[0]["tags"]["prepull:trigger"], "patch-day");
    assert_eq!(
        start_calls(&s)[0]["tags"].get("prepull:oldest-new-push"),
        None,
        "a rebuild of the published images brings no push: no push-to-AMI latency"
    );
}

#[tokio::test]
async fn a_failed_patch_day_build_is_reported_not_restarted_the_same_day_and_retried_the_next() {
    let s = established().await;
    let first = dry_then_real(&s, schedule(), "r-1", "2026-12-09T06:00:00Z").await;
    assert_eq!(first.outcome, Outcome::BuildStarted);
    let failed = first.image_build_version_arn.clone().unwrap();
    s.bench
        .emulator
        .finish_image(&failed, "FAILED", Some("update-windows failed"))
        .unwrap();

    // The scheduler's retry, or an unforced run by hand, the same day: the same request.
    let again = run(&s, schedule(), "r-2", "2026-12-09T09:00:00Z").await;
    assert_eq!(again.outcome, Outcome::AlreadyAttempted);
    assert_eq!(
        again.image_build_version_arn.as_deref(),
        Some(failed.as_str())
    );
    assert_eq!(again.earlier_build_status, Some(BuildStatus::Failed));
    let starts = start_calls(&s);
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["clientToken"], starts[1]["clientToken"]);

    // The next day's run is a new request: the patch is still missing, so it builds again.
    let next_day = dry_then_real(&s, schedule(), "r-3", "2026-12-10T06:00:00Z").await;
    assert_eq!(
        (next_day.outcome, next_day.reasons.clone()),
        (Outcome::BuildStarted, vec!["patch-day"])
    );
    assert_ne!(
        next_day.image_build_version_arn.as_deref(),
        Some(failed.as_str())
    );
    assert_eq!(next_day.earlier_build_status, None);
}

#[tokio::test]
async fn a_new_parent_image_value_starts_a_build() {
    let s = established().await;
    set_parent(&s, "ami-0bbbbbbbbbbbbbbb2").await;
    s.bench.emulator.clear_requests();
    let summary = dry_then_real(&s, schedule(), "r-1", "2026-12-03T06:00:00Z").await;
    assert_eq!(
        (summary.outcome, summary.reasons.clone()),
        (Outcome::BuildStarted, vec!["parent-image"])
    );
    assert!(
        summary.conditions[2]
            .detail
            .contains("ami-0bbbbbbbbbbbbbbb2")
            && summary.conditions[2]
                .detail
                .contains("ami-0aaaaaaaaaaaaaaa1")
    );
    assert_eq!(
        start_calls(&s)[0]["tags"]["prepull:parent-image"],
        "ami-0bbbbbbbbbbbbbbb2"
    );
    assert_eq!(
        s.bench.emulator.mutating_operations(),
        ["StartImagePipelineExecution"]
    );
}

#[tokio::test]
async fn an_image_older_than_the_limit_is_rebuilt() {
    let s = established().await;
    // 36 days after the build, and before January's patch day (2027-01-13).
    let summary = dry_then_real(&s, schedule(), "r-1", "2027-01-06T06:00:00Z").await;
    assert_eq!(
        (summary.outcome, summary.reasons.clone()),
        (Outcome::BuildStarted, vec!["max-image-age"])
    );
    assert_eq!(
        s.bench.emulator.mutating_operations(),
        ["StartImagePipelineExecution"]
    );
}

#[tokio::test]
async fn forcing_while_a_build_runs_reports_it_and_starts_nothing() {
    let s = established().await;
    let first = dry_then_real(&s, force("CVE-2026-1234"), "req-1", "2026-12-02T06:00:00Z").await;
    assert_eq!(
        (first.outcome, first.reasons.clone()),
        (Outcome::BuildStarted, vec!["forced"])
    );
    let second = dry_then_real(
        &s,
        force("again impatiently"),
        "req-2",
        "2026-12-02T06:05:00Z",
    )
    .await;
    assert_eq!(second.outcome, Outcome::BuildRunning);
    assert_eq!(second.running_build, first.image_build_version_arn);
    assert_eq!(start_calls(&s).len(), 1);
}

#[tokio::test]
async fn forcing_twice_makes_two_builds_with_different_tokens() {
    let s = established().await;
    let first = dry_then_real(
        &s,
        force("CVE-2026-1234"),
        "0b1e7f52-8c2d-4a57-9d1c-2f4d7a9e1a01",
        "2026-12-02T06:00:00Z",
    )
    .await;
    s.bench
        .emulator
        .finish_image(
            first.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();
    let second = dry_then_real(
        &s,
        force("CVE-2026-1234"),
        "5d9c3b21-7e4f-4b6a-8c0d-9e1f2a3b4c02",
        "2026-12-02T08:00:00Z",
    )
    .await;
    assert_eq!(second.outcome, Outcome::BuildStarted);
    assert_ne!(
        first.image_build_version_arn,
        second.image_build_version_arn
    );
    let starts = start_calls(&s);
    assert_eq!(starts.len(), 2);
    let tokens: Vec<&str> = starts
        .iter()
        .map(|p| p["clientToken"].as_str().unwrap())
        .collect();
    assert_eq!(
        tokens,
        [
            "0b1e7f52-8c2d-4a57-9d1c-2f4d7a9e1a01",
            "5d9c3b21-7e4f-4b6a-8c0d-9e1f2a3b4c02"
        ],
        "the invocations' request ids"
    );
    assert!(
        starts
            .iter()
            .all(|p| p["tags"]["prepull:reason"] == "CVE-2026-1234"),
        "the reason is recorded on the build"
    );
}

#[tokio::test]
async fn a_malformed_payload_is_a_clear_error_and_makes_no_call() {
    let s = established().await;
    for (payload, needle) in [
        (json!({"source": "cron"}), "source"),
        (json!({"force": true}), "reason"),
        (
            json!({"force": true, "reason": "$(Invoke-Expression calc)"}),
            "reason",
        ),
        (json!({"force": 1, "reason": "x"}), "force"),
        (json!("schedule"), "expected"),
    ] {
        let error = handle(
            &s.common,
            settings(),
            payload.clone(),
            "r",
            at("2026-12-02T06:00:00Z"),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains(needle), "{payload}: {error}");
        assert!(!error.is_retryable());
    }
    assert!(s.bench.emulator.requests().is_empty(), "not even a read");
}

#[tokio::test]
async fn a_second_reason_on_the_same_day_is_a_new_build_not_a_token_clash() {
    let s = established().await;
    let first = run(&s, schedule(), "r-1", "2026-12-09T06:00:00Z").await;
    s.bench
        .emulator
        .finish_image(
            first.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();
    set_parent(&s, "ami-0ccccccccccccccc3").await;
    let second = dry_then_real(&s, schedule(), "r-2", "2026-12-09T18:00:00Z").await;
    assert_eq!(
        (second.outcome, second.reasons.clone()),
        (Outcome::BuildStarted, vec!["parent-image"])
    );
    let tokens: Vec<String> = start_calls(&s)
        .iter()
        .map(|p| p["clientToken"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1]);
    assert!(
        tokens
            .iter()
            .all(|t| t.starts_with("s20261209-") && t.len() <= 36),
        "{tokens:?}"
    );
}

#[tokio::test]
async fn a_run_that_failed_after_writing_the_version_is_finished_by_the_retry() {
    let s = established().await;
    s.push("team/api", "v7", "api, event lost").await.unwrap();
    s.bench.emulator.inject(prepull_bench::emulator::Fault::new(
        "StartImagePipelineExecution",
        prepull_bench::emulator::FaultKind::ServerError,
        3,
    ));
    s.bench.emulator.set_clock(Some(at("2026-12-02T06:00:00Z")));
    let error = handle(
        &s.common,
        settings(),
        schedule(),
        "r-1",
        at("2026-12-02T06:00:00Z"),
    )
    .await
    .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    s.bench.emulator.clear_requests();
    let retried = dry_then_real(&s, schedule(), "r-1", "2026-12-02T06:01:00Z").await;
    assert_eq!(
        (retried.outcome, retried.reasons.clone()),
        (Outcome::BuildStarted, vec!["manifest-changed"])
    );
    assert!(
        retried.conditions[0]
            .detail
            .contains("no image is built from cache component version 1.0.2"),
        "{}",
        retried.conditions[0].detail
    );
    assert_eq!(
        s.bench.emulator.mutating_operations(),
        ["StartImagePipelineExecution"],
        "the version is not written twice"
    );
}

#[tokio::test]
async fn images_gone_from_ecr_leave_the_manifest_and_an_empty_cache_is_never_built() {
    let s = established().await;
    s.delete("team/api", "v7").await.unwrap();
    let summary = dry_then_real(&s, schedule(), "r-1", "2026-12-02T06:00:00Z").await;
    assert_eq!(summary.outcome, Outcome::BuildStarted);
    assert_eq!(summary.reasons, ["manifest-changed"]);
    assert_eq!(summary.removed.len(), 1);
    assert!(summary.removed[0].contains("team/api:v7@sha256:"));
    assert!(
        summary.unresolved.is_empty(),
        "it left the cache: removed, not unresolved"
    );
    assert_eq!(summary.images.len(), 1);
    assert!(summary.images[0].contains("team/web:v42"));
    s.bench
        .emulator
        .finish_image(
            summary.image_build_version_arn.as_deref().unwrap(),
            "AVAILABLE",
            None,
        )
        .unwrap();

    s.delete("team/web", "v42").await.unwrap();
    s.bench.emulator.clear_requests();
    let forced = dry_then_real(
        &s,
        force("rebuild with nothing"),
        "r-2",
        "2026-12-03T06:00:00Z",
    )
    .await;
    assert_eq!(forced.outcome, Outcome::NothingToCache);
    assert!(forced.plan.build.is_none());
    assert!(
        forced
            .reason
            .as_deref()
            .unwrap()
            .contains("no watched image is in ECR"),
        "{:?}",
        forced.reason
    );
    assert!(
        start_calls(&s).is_empty(),
        "no build of an empty cache, even forced"
    );
}
