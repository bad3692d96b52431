//! Fuzz targets that run on the stable toolchain: proptest strategies for hostile input, and
//! the properties every input must keep. The suite runs a few hundred cases of each
//! (`tests/tests/suite/fuzzing.rs`); `make reliability` runs each for a time budget.
//!
//! The inputs are arbitrary JSON, and real events (the fixtures) with one value replaced by
//! arbitrary JSON: most of a mutated event is well formed, so the readers get past their first
//! check and the replaced value reaches the deeper ones.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prepull::core::image::{Digest, ImageRef, Registry, Repository, Tag};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Strings as an attacker would send them: any Unicode, the characters that mean something to
/// PowerShell, YAML, AWSTOE and terminals, and names that are nearly valid.
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9._/-]{0,40}",
        "[ -~]{0,60}",
        prop::collection::vec(
            prop_oneof![
                Just(";".to_owned()),
                Just("$(Remove-Item C:\\)".to_owned()),
                Just("`".to_owned()),
                Just("'".to_owned()),
                Just("\"".to_owned()),
                Just("@'\n".to_owned()),
                Just("{{ build.x }}".to_owned()),
                Just(": ".to_owned()),
                Just("\n---\n".to_owned()),
                Just("&anchor".to_owned()),
                Just("\r\n".to_owned()),
                Just("\0".to_owned()),
                Just("\u{202e}".to_owned()),
                Just("\u{0430}".to_owned()),
                Just("team/web".to_owned()),
                Just("v42".to_owned()),
                Just("sha256:".to_owned()),
                "[0-9a-f]{64}",
            ],
            0..6
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// Any JSON value, with hostile strings.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z-]{0,12}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every leaf and container of `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}

/// A real event with one of its values (or the whole event) replaced by arbitrary JSON.
pub fn mutated(event: Value) -> impl Strategy<Value = Value> {
    let mut all = Vec::new();
    pointers(&event, String::new(), &mut all);
    (prop::sample::select(all), json_value()).prop_map(move |(pointer, replacement)| {
        let mut mutated = event.clone();
        if let Some(slot) = mutated.pointer_mut(&pointer) {
            *slot = replacement;
        }
        mutated
    })
}

/// An input for one of the readers: arbitrary JSON, or a mutated fixture.
pub fn reader_input(fixtures: Vec<Value>) -> BoxedStrategy<Value> {
    let mutations: Vec<BoxedStrategy<Value>> =
        fixtures.into_iter().map(|f| mutated(f).boxed()).collect();
    prop_oneof![
        1 => json_value(),
        3 => prop::strategy::Union::new(mutations),
    ]
    .boxed()
}

/// The fixtures each reader is fuzzed from.
pub fn reader_fixtures() -> anyhow::Result<Vec<Value>> {
    [
        "sqs-ecr-push.json",
        "sqs-ecr-delete.json",
        "ecr-push.json",
        "imagebuilder-available.json",
        "scheduler-patch-day.json",
    ]
    .into_iter()
    .map(|name| crate::fixtures::load(name).with_context(|| name.to_owned()))
    .chain([
        Ok(json!({"action": "rollback", "dry_run": true})),
        Ok(json!({"action": "republish", "image": "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull-windows-cache/1.0.0/1"})),
        Ok(json!({"force": true, "reason": "CVE"})),
        Ok(json!({"action": "status"})),
    ])
    .collect()
}

fn watched() -> Vec<ImageRef> {
    let registry =
        Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").expect("a valid registry");
    ["team/web:v42", "team/api:v7"]
        .iter()
        .map(|i| ImageRef::parse(i, &registry).expect("a valid image"))
        .collect()
}

/// Every event reader takes `input` without panicking: it reads it or refuses it.
pub fn readers_never_panic(input: &Value) -> Result<(), TestCaseError> {
    let watched = watched();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let _ = prepull::core::events::ecr::read_input(input, &watched);
        let _ = prepull::core::events::imagebuilder::read_state_change(input);
        let _ = prepull::core::events::operator::read_build_finished_request(input);
        let _ = prepull::core::events::operator::read_patch_day_request(input);
    }));
    prop_assert!(outcome.is_ok(), "a reader panicked on {input}");
    Ok(())
}

/// ECR's own grammar, from the botocore model (`RepositoryName`), and the tag and digest
/// grammars of the OCI distribution specification that ECR enforces.
pub struct Grammar {
    repository: fancy_regex::Regex,
    repository_length: (usize, usize),
    tag: regex::Regex,
    digest: regex::Regex,
}

impl Grammar {
    pub fn load() -> anyhow::Result<Self> {
        let data = crate::emulator::model::botocore_data(&crate::moto::workspace_root())?;
        let ecr = crate::emulator::model::ServiceModel::load(&data, "ecr")?;
        let (pattern, min, max) = ecr
            .string_rule("RepositoryName")
            .context("botocore's ECR model gives RepositoryName a pattern")?;
        let bound = |b: Option<i64>, default: usize| {
            b.and_then(|b| usize::try_from(b).ok()).unwrap_or(default)
        };
        Ok(Self {
            repository: fancy_regex::Regex::new(&format!("^(?:{pattern})$"))?,
            repository_length: (bound(min, 0), bound(max, usize::MAX)),
            tag: regex::Regex::new("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")?,
            digest: regex::Regex::new("^sha256:[a-f0-9]{64}$")?,
        })
    }

    /// Whether ECR's grammar allows `value` as a repository name.
    pub fn allows_repository(&self, value: &str) -> bool {
        let (min, max) = self.repository_length;
        self.repository.is_match(value).unwrap_or(false) && (min..=max).contains(&value.len())
    }

    /// prepull's validators accept `value` only where the grammar does.
    pub fn check(&self, value: &str) -> Result<(), TestCaseError> {
        if Repository::parse(value).is_ok() {
            prop_assert!(
                self.allows_repository(value),
                "a repository outside ECR's grammar was accepted: {value:?}"
            );
        }
        if Tag::parse(value).is_ok() {
            prop_assert!(
                self.tag.is_match(value),
                "a tag outside the grammar was accepted: {value:?}"
            );
        }
        if Digest::parse(value).is_ok() {
            prop_assert!(
                self.digest.is_match(value),
                "a digest outside the grammar was accepted: {value:?}"
            );
        }
        Ok(())
    }
}

/// One fuzz target's run.
#[derive(Debug, Clone, Serialize)]
pub struct FuzzRun {
    pub target: &'static str,
    pub cases: u64,
    pub seconds: f64,
    /// The minimal failing input, when one was found.
    pub failure: Option<String>,
}

/// Runs `property` on `strategy`'s inputs until `budget` is spent, in rounds of 256 cases
/// (each round with a fresh random seed). A failure is shrunk by proptest and returned.
pub fn fuzz<S, F>(target: &'static str, strategy: S, budget: Duration, property: F) -> FuzzRun
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    const ROUND: u32 = 256;
    let start = Instant::now();
    let mut cases = 0u64;
    let mut failure = None;
    while start.elapsed() < budget && failure.is_none() {
        let mut runner = TestRunner::new(Config {
            cases: ROUND,
            failure_persistence: None,
            ..Config::default()
        });
        match runner.run(&strategy, &property) {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => failure = Some(format!("{why}: {input:?}")),
            Err(TestError::Abort(why)) => failure = Some(format!("aborted: {why}")),
        }
        cases += u64::from(ROUND);
    }
    FuzzRun {
        target,
        cases,
        seconds: start.elapsed().as_secs_f64(),
        failure,
    }
}
