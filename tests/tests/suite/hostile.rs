//! The hostile-input corpus (`tests/fixtures/hostile/`, written by its `generate.py`): at least
//! 60 cases per function of injection attempts (PowerShell, YAML, AWSTOE's `{{ }}`, control
//! characters, look-alikes, 1 MB values) in every field that reaches a document, a tag, a label
//! or an API call, and shape errors. Every case must end in a deliberate ignore or a clear
//! error, make no mutating AWS call, and never hand a raw hostile value back unescaped.

use std::time::{Duration, Instant};

use chrono::Utc;
use prepull::build_finished::FleetSettings;
use prepull::patch_day::PatchDaySettings;
use prepull::{PrepullError, build_finished, image_pushed, patch_day};
use prepull_bench::scenario::Scenario;
use prepull_bench::seed::PipelineSeed;
use serde_json::Value;

const ONE_MEGABYTE: &str = "@@1MB@@";

/// The function's cases, with `@@1MB@@` made a 1 MB value and `@@repeat@@` a batch of copies.
fn corpus(function: &str) -> Vec<(String, Value)> {
    let raw = prepull_bench::fixtures::load(&format!("hostile/{function}.json")).unwrap();
    let megabyte = "a".repeat(1 << 20);
    raw.as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let name = case["name"].as_str().unwrap().to_owned();
            (name, expand(&case["input"], &megabyte))
        })
        .collect()
}

fn expand(value: &Value, megabyte: &str) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace(ONE_MEGABYTE, megabyte)),
        Value::Array(items) => Value::Array(items.iter().map(|v| expand(v, megabyte)).collect()),
        Value::Object(map) if map.contains_key("@@repeat@@") => {
            let count = map["@@repeat@@"].as_u64().unwrap();
            let records = (0..count)
                .map(|n| {
                    let mut record = expand(&map["record"], megabyte);
                    record["messageId"] = Value::String(format!("m-{n}"));
                    record
                })
                .collect();
            serde_json::json!({ "Records": Value::Array(records) })
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand(v, megabyte)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a case handed back must not carry: a raw control or direction character, or a value
/// too long to be anything but echoed input.
fn assert_inert(case: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| matches!(c, '\n' | '\r' | '\0' | '\u{202e}')),
        "{case}: a raw control character in {text:?}"
    );
    assert!(
        text.len() < 2_000,
        "{case}: {} characters handed back",
        text.len()
    );
}

fn assert_clear_error(case: &str, error: &PrepullError) {
    assert!(
        matches!(error, PrepullError::InvalidInput(_)),
        "{case}: not an input error: {error}"
    );
    assert!(
        !error.is_retryable(),
        "{case}: a bad input is never retried"
    );
    assert_inert(case, &error.to_string());
}

async fn scenario() -> Scenario {
    Scenario::start(&["team/web:v42"], PipelineSeed::default(), &[])
        .await
        .unwrap()
}

fn assert_no_mutating_call(s: &Scenario, case: &str) {
    assert!(
        s.bench.emulator.mutating_operations().is_empty(),
        "{case}: {:?}",
        s.bench.emulator.mutating_operations()
    );
}

#[tokio::test]
async fn image_pushed_ignores_or_rejects_every_hostile_record() {
    let s = scenario().await;
    let cases = corpus("image-pushed");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (case, input) in cases {
        s.bench.emulator.clear_requests();
        match image_pushed::handle(&s.common, input).await {
            Ok(summary) => {
                assert!(
                    matches!(
                        summary.outcome,
                        image_pushed::Outcome::Ignored | image_pushed::Outcome::Rejected
                    ),
                    "{case}: {:?}",
                    summary.outcome
                );
                for note in summary.ignored.iter().chain(&summary.rejected) {
                    assert!(!note.reason.is_empty(), "{case}: a reason is given");
                    assert_inert(&case, &note.reason);
                }
                assert_eq!(
                    summary.batch_item_failures.len(),
                    summary.rejected.len(),
                    "{case}: every rejected record goes to the dead-letter queue"
                );
            }
            Err(error) => assert_clear_error(&case, &error),
        }
        assert_no_mutating_call(&s, &case);
    }
}

#[tokio::test]
async fn patch_day_refuses_every_hostile_payload() {
    let s = scenario().await;
    let settings = PatchDaySettings {
        offset_days: 1,
        max_image_age_days: 35,
    };
    let cases = corpus("patch-day");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (case, input) in cases {
        s.bench.emulator.clear_requests();
        let reason = input["reason"].as_str().map(str::to_owned);
        match patch_day::handle(&s.common, settings, input, "hostile", Utc::now()).await {
            // A reason tag values allow is legitimately accepted (as a dry run here), and
            // reaches only the plan's tags.
            Ok(summary) => {
                let reason = reason.unwrap_or_else(|| panic!("{case}: accepted"));
                assert!(summary.dry_run, "{case}");
                let tags = &summary.plan.build.as_ref().unwrap().tags;
                assert!(
                    tags.contains(&("prepull:reason".to_owned(), reason.trim().to_owned())),
                    "{case}: {tags:?}"
                );
                assert!(
                    reason
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c)),
                    "{case}: only a tag value's characters are accepted"
                );
            }
            Err(error) => assert_clear_error(&case, &error),
        }
        assert_no_mutating_call(&s, &case);
    }
}

#[tokio::test]
async fn build_finished_ignores_or_refuses_every_hostile_event_and_payload() {
    let s = scenario().await;
    let settings = FleetSettings::from_lookup(|name| {
        (name == "PREPULL_ASG_NAMES").then(|| "eks-windows-a".to_owned())
    })
    .unwrap();
    let cases = corpus("build-finished");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (case, input) in cases {
        s.bench.emulator.clear_requests();
        let deadline = Instant::now() + Duration::from_secs(20);
        match build_finished::handle(&s.common, &settings, input, deadline).await {
            Ok(summary) => {
                assert_eq!(
                    summary.outcome,
                    build_finished::Outcome::Ignored,
                    "{case}: {summary:?}"
                );
                assert_inert(&case, summary.reason.as_deref().unwrap_or_default());
                assert!(
                    s.bench.emulator.requests().is_empty(),
                    "{case}: an event of another home costs no call"
                );
            }
            Err(error) => assert_clear_error(&case, &error),
        }
        assert_no_mutating_call(&s, &case);
    }
}
