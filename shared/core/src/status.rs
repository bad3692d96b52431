//! What an operator's status request reports. Every fact names the AWS read it came from, and a
//! read that failed is reported as unknown, with its error, rather than failing the report.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::build::{BuildStatus, BuildSummary};
use crate::image::Digest;

/// One fact of the report and the read it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact<T> {
    /// The AWS call (and the resource it read) that this fact comes from.
    pub source: String,
    #[serde(flatten)]
    pub reading: Reading<T>,
}

/// A read's answer: `"value": …`, or `"unknown": "<why>"` when the read failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading<T> {
    Value(T),
    Unknown(String),
}

impl<T> Fact<T> {
    pub fn known(source: impl Into<String>, value: T) -> Self {
        Self {
            source: source.into(),
            reading: Reading::Value(value),
        }
    }

    pub fn unknown(source: impl Into<String>, why: impl fmt::Display) -> Self {
        Self {
            source: source.into(),
            reading: Reading::Unknown(why.to_string()),
        }
    }

    /// A read's result as a fact: its error becomes the reason the fact is unknown.
    pub fn read<E: fmt::Display>(source: impl Into<String>, result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Self::known(source, value),
            Err(error) => Self::unknown(source, error),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match &self.reading {
            Reading::Value(value) => Some(value),
            Reading::Unknown(_) => None,
        }
    }

    pub fn value_mut(&mut self) -> Option<&mut T> {
        match &mut self.reading {
            Reading::Value(value) => Some(value),
            Reading::Unknown(_) => None,
        }
    }
}

/// How the digest the cache pins compares with the one ECR's tag points at now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum DigestInEcr {
    /// ECR's tag points at the cached digest.
    Current,
    /// The tag has moved: ECR holds a newer digest than the cache.
    Moved { digest: Digest },
    /// The cache does not hold the image, and ECR has it now: the next reconcile adds it.
    NotCached { digest: Digest },
    /// ECR has no such repository or tag.
    Missing,
}

pub fn compare_with_ecr(cached: Option<&Digest>, in_ecr: Option<&Digest>) -> DigestInEcr {
    match (cached, in_ecr) {
        (_, None) => DigestInEcr::Missing,
        (Some(cached), Some(digest)) if digest == cached => DigestInEcr::Current,
        (Some(_), Some(digest)) => DigestInEcr::Moved {
            digest: digest.clone(),
        },
        (None, Some(digest)) => DigestInEcr::NotCached {
            digest: digest.clone(),
        },
    }
}

/// What build-finished will do when the running build ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "follow_up", rename_all = "kebab-case")]
pub enum ExpectedFollowUp {
    /// The running build caches the latest component version's manifest.
    NotNeeded,
    /// The component moved on during the build: the latest version is built next.
    Builds { component_version: String },
}

/// The follow-up the running build will get: the same rule build-finished applies
/// ([`crate::build::decide_follow_up`]), seen from before the build ends.
pub fn expected_follow_up(
    running: &BuildSummary,
    latest_manifest: &str,
    latest_version: &str,
) -> ExpectedFollowUp {
    if running.manifest_hash.as_deref() == Some(latest_manifest) {
        ExpectedFollowUp::NotNeeded
    } else {
        ExpectedFollowUp::Builds {
            component_version: latest_version.to_owned(),
        }
    }
}

/// The build that carries `manifest_hash`, AVAILABLE or still running: the newest one.
pub fn build_of<'a>(builds: &'a [BuildSummary], manifest_hash: &str) -> Option<&'a BuildSummary> {
    builds
        .iter()
        .filter(|b| {
            b.manifest_hash.as_deref() == Some(manifest_hash)
                && (b.status == BuildStatus::Available || b.status.is_running())
        })
        .max_by_key(|b| b.arn.build())
}

/// Whole seconds from `since` to `now`; `None` when the start is unknown.
pub fn age_seconds(now: DateTime<Utc>, since: Option<DateTime<Utc>>) -> Option<i64> {
    since.map(|since| (now - since).num_seconds())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::arn::ImageBuilderArn;

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:x}").repeat(64))).unwrap()
    }

    fn build(number: u32, status: BuildStatus, hash: &str) -> BuildSummary {
        BuildSummary {
            arn: ImageBuilderArn::parse(&format!(
                "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0/{number}"
            ))
            .unwrap(),
            status,
            manifest_hash: Some(hash.to_owned()),
            parent_image: None,
            date_created: None,
            component_version: None,
        }
    }

    #[test]
    fn facts_serialise_with_their_source_and_a_value_or_why_unknown() {
        let known = Fact::known("ssm:GetParameterHistory /p in us-east-1", 3);
        assert_eq!(
            serde_json::to_value(&known).unwrap(),
            json!({"source": "ssm:GetParameterHistory /p in us-east-1", "value": 3})
        );
        let unknown: Fact<i32> = Fact::read("ecr:BatchGetImage", Err("ThrottlingException"));
        assert_eq!(
            serde_json::to_value(&unknown).unwrap(),
            json!({"source": "ecr:BatchGetImage", "unknown": "ThrottlingException"})
        );
        assert_eq!(unknown.value(), None);
        assert_eq!(known.value(), Some(&3));
    }

    #[test]
    fn digests_compare_with_ecr() {
        let table = [
            (Some(digest(1)), Some(digest(1)), DigestInEcr::Current),
            (
                Some(digest(1)),
                Some(digest(2)),
                DigestInEcr::Moved { digest: digest(2) },
            ),
            (Some(digest(1)), None, DigestInEcr::Missing),
            (None, None, DigestInEcr::Missing),
            (
                None,
                Some(digest(2)),
                DigestInEcr::NotCached { digest: digest(2) },
            ),
        ];
        for (cached, in_ecr, expected) in table {
            assert_eq!(compare_with_ecr(cached.as_ref(), in_ecr.as_ref()), expected);
        }
        assert_eq!(
            serde_json::to_value(DigestInEcr::Moved { digest: digest(2) }).unwrap(),
            json!({"state": "moved", "digest": digest(2).as_str()})
        );
    }

    #[test]
    fn the_follow_up_is_the_latest_version_when_the_manifest_moved() {
        let running = build(4, BuildStatus::Building, "h1");
        let table = [
            ("h1", ExpectedFollowUp::NotNeeded),
            (
                "h2",
                ExpectedFollowUp::Builds {
                    component_version: "1.0.7".to_owned(),
                },
            ),
        ];
        for (latest, expected) in table {
            assert_eq!(expected_follow_up(&running, latest, "1.0.7"), expected);
        }
    }

    #[test]
    fn the_build_of_a_manifest_is_the_newest_available_or_running_one() {
        let builds = [
            build(1, BuildStatus::Available, "h1"),
            build(2, BuildStatus::Failed, "h2"),
            build(3, BuildStatus::Available, "h1"),
            build(4, BuildStatus::Building, "h3"),
        ];
        let table = [("h1", Some(3)), ("h2", None), ("h3", Some(4)), ("h9", None)];
        for (hash, expected) in table {
            assert_eq!(
                build_of(&builds, hash).map(|b| b.arn.build()),
                expected.map(Some),
                "{hash}"
            );
        }
    }

    #[test]
    fn ages_are_whole_seconds() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let now = at("2026-12-01T10:00:00Z");
        assert_eq!(age_seconds(now, Some(at("2026-12-01T09:58:30Z"))), Some(90));
        assert_eq!(age_seconds(now, None), None);
    }
}
