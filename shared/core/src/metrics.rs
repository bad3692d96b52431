//! The CloudWatch metrics prepull emits (in the Embedded Metric Format, through its log lines),
//! and which outcome counts as which. The template's dashboard reads the same names.

use chrono::{DateTime, Utc};

use crate::build::BuildStatus;
use crate::manifest::Manifest;
use crate::parameter::ParameterAction;
use crate::refresh::RefreshResult;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "prepull";
/// The dimension naming the function (its deployed name).
pub const FUNCTION_DIMENSION: &str = "Function";
/// The dimension naming the pipeline (its name, not its ARN).
pub const PIPELINE_DIMENSION: &str = "Pipeline";
/// The extra dimension of [`Metric::Publishes`].
pub const REGION_DIMENSION: &str = "Region";

/// The EMF units prepull uses (a subset of CloudWatch's `StandardUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// ECR events read (every record of a batch).
    PushesSeen,
    /// Records deliberately ignored (another repository, a tag not watched, a failed push).
    PushesIgnored,
    /// Records refused as malformed or hostile (sent to the dead-letter queue).
    PushesRejected,
    ComponentVersionsWritten,
    BuildsStarted,
    /// A build was wanted while another ran: the running build's follow-up takes the change.
    BuildsQueued,
    /// The same build was requested before and ended without an image; nothing started.
    BuildsAlreadyAttempted,
    /// Builds that ended AVAILABLE, FAILED or CANCELLED, as build-finished saw them.
    BuildsSucceeded,
    BuildsFailed,
    BuildsCancelled,
    /// A region's parameter took a new AMI (with the `Region` dimension).
    Publishes,
    RefreshesStarted,
    RefreshesReplaced,
    RefreshesSkipped,
    RefreshesFailed,
    /// A group whose launch template cannot take the AMI: reported, and no refresh started.
    RefreshesMisconfigured,
    /// From the oldest push in a build's manifest that the previous AMI lacked to the publish
    /// of the AMI that holds it.
    PushToAmiLatency,
}

impl Metric {
    pub const ALL: [Metric; 17] = [
        Metric::PushesSeen,
        Metric::PushesIgnored,
        Metric::PushesRejected,
        Metric::ComponentVersionsWritten,
        Metric::BuildsStarted,
        Metric::BuildsQueued,
        Metric::BuildsAlreadyAttempted,
        Metric::BuildsSucceeded,
        Metric::BuildsFailed,
        Metric::BuildsCancelled,
        Metric::Publishes,
        Metric::RefreshesStarted,
        Metric::RefreshesReplaced,
        Metric::RefreshesSkipped,
        Metric::RefreshesFailed,
        Metric::RefreshesMisconfigured,
        Metric::PushToAmiLatency,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::PushesSeen => "PushesSeen",
            Metric::PushesIgnored => "PushesIgnored",
            Metric::PushesRejected => "PushesRejected",
            Metric::ComponentVersionsWritten => "ComponentVersionsWritten",
            Metric::BuildsStarted => "BuildsStarted",
            Metric::BuildsQueued => "BuildsQueued",
            Metric::BuildsAlreadyAttempted => "BuildsAlreadyAttempted",
            Metric::BuildsSucceeded => "BuildsSucceeded",
            Metric::BuildsFailed => "BuildsFailed",
            Metric::BuildsCancelled => "BuildsCancelled",
            Metric::Publishes => "Publishes",
            Metric::RefreshesStarted => "RefreshesStarted",
            Metric::RefreshesReplaced => "RefreshesReplaced",
            Metric::RefreshesSkipped => "RefreshesSkipped",
            Metric::RefreshesFailed => "RefreshesFailed",
            Metric::RefreshesMisconfigured => "RefreshesMisconfigured",
            Metric::PushToAmiLatency => "PushToAmiLatency",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::PushToAmiLatency => Unit::Seconds,
            _ => Unit::Count,
        }
    }
}

/// The metric a refresh outcome counts toward; `None` for a dry run's plan.
pub fn for_refresh(result: RefreshResult) -> Option<Metric> {
    match result {
        RefreshResult::Started => Some(Metric::RefreshesStarted),
        RefreshResult::Replaced => Some(Metric::RefreshesReplaced),
        RefreshResult::AlreadyRollingOut
        | RefreshResult::AlreadyRolledOut
        | RefreshResult::SkippedRefreshInProgress => Some(Metric::RefreshesSkipped),
        RefreshResult::Failed => Some(Metric::RefreshesFailed),
        RefreshResult::Misconfigured => Some(Metric::RefreshesMisconfigured),
        RefreshResult::WouldStart | RefreshResult::WouldReplace => None,
    }
}

/// The metric a finished build counts toward.
pub fn for_finished_build(status: BuildStatus) -> Option<Metric> {
    match status {
        BuildStatus::Available => Some(Metric::BuildsSucceeded),
        BuildStatus::Failed => Some(Metric::BuildsFailed),
        BuildStatus::Cancelled => Some(Metric::BuildsCancelled),
        _ => None,
    }
}

/// Whether a parameter action is a publish.
pub fn is_publish(action: ParameterAction) -> bool {
    action == ParameterAction::Written
}

/// The oldest push among the images of `manifest` that `previous` (the manifest of the AMI
/// published now) does not hold at the same digest: where the push-to-AMI latency starts.
/// `None` when the new manifest adds nothing (a patch-day rebuild, say).
pub fn oldest_new_push(manifest: &Manifest, previous: Option<&Manifest>) -> Option<DateTime<Utc>> {
    manifest
        .images()
        .filter(|pin| previous.and_then(|p| p.digest_of(&pin.image)) != Some(&pin.digest))
        .filter_map(|pin| pin.pushed_at)
        .min()
}

/// Whole and fractional seconds from `since` to `published`, never negative (the clocks of
/// the event and of the function may disagree by a little).
#[expect(
    clippy::cast_precision_loss,
    reason = "milliseconds of a latency fit an f64 exactly"
)]
pub fn latency_seconds(since: DateTime<Utc>, published: DateTime<Utc>) -> f64 {
    (published - since).num_milliseconds().max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Digest, ImageRef, Registry};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn image(name: &str) -> ImageRef {
        let registry = Registry::for_account("123456789012", "us-east-1").unwrap();
        ImageRef::parse(name, &registry).unwrap()
    }

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:x}").repeat(64))).unwrap()
    }

    fn manifest(pins: &[(&str, u8, &str)]) -> Manifest {
        let mut manifest = Manifest::new();
        for (name, d, pushed) in pins {
            manifest.pin(image(name), digest(*d), Some(at(pushed)));
        }
        manifest
    }

    #[test]
    fn names_are_unique_and_units_are_count_but_the_latency() {
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for metric in Metric::ALL {
            let expected = if metric == Metric::PushToAmiLatency {
                Unit::Seconds
            } else {
                Unit::Count
            };
            assert_eq!(metric.unit(), expected, "{}", metric.name());
        }
    }

    #[test]
    fn outcomes_count_toward_their_metric() {
        let refreshes = [
            (RefreshResult::Started, Some(Metric::RefreshesStarted)),
            (RefreshResult::Replaced, Some(Metric::RefreshesReplaced)),
            (
                RefreshResult::AlreadyRollingOut,
                Some(Metric::RefreshesSkipped),
            ),
            (
                RefreshResult::AlreadyRolledOut,
                Some(Metric::RefreshesSkipped),
            ),
            (
                RefreshResult::SkippedRefreshInProgress,
                Some(Metric::RefreshesSkipped),
            ),
            (RefreshResult::Failed, Some(Metric::RefreshesFailed)),
            (
                RefreshResult::Misconfigured,
                Some(Metric::RefreshesMisconfigured),
            ),
            (RefreshResult::WouldStart, None),
            (RefreshResult::WouldReplace, None),
        ];
        for (result, metric) in refreshes {
            assert_eq!(for_refresh(result), metric, "{result:?}");
        }
        let builds = [
            (BuildStatus::Available, Some(Metric::BuildsSucceeded)),
            (BuildStatus::Failed, Some(Metric::BuildsFailed)),
            (BuildStatus::Cancelled, Some(Metric::BuildsCancelled)),
            (BuildStatus::Building, None),
        ];
        for (status, metric) in builds {
            assert_eq!(for_finished_build(status), metric, "{status}");
        }
        assert!(is_publish(ParameterAction::Written));
        assert!(!is_publish(ParameterAction::AlreadyCurrent));
    }

    #[test]
    fn latency_starts_at_the_oldest_push_the_previous_ami_lacked() {
        let previous = manifest(&[
            ("web:v1", 1, "2026-12-01T08:00:00Z"),
            ("api:v1", 2, "2026-12-01T08:00:00Z"),
        ]);
        let table = [
            // Nothing new: a rebuild of the same images (their pins re-read later).
            (
                manifest(&[
                    ("web:v1", 1, "2026-12-02T06:00:00Z"),
                    ("api:v1", 2, "2026-12-02T06:00:00Z"),
                ]),
                Some(&previous),
                None,
            ),
            // One moved: its push, not the re-read of the other.
            (
                manifest(&[
                    ("web:v1", 3, "2026-12-02T09:00:00Z"),
                    ("api:v1", 2, "2026-12-02T06:00:00Z"),
                ]),
                Some(&previous),
                Some("2026-12-02T09:00:00Z"),
            ),
            // Two moved: the older push.
            (
                manifest(&[
                    ("web:v1", 3, "2026-12-02T09:00:00Z"),
                    ("api:v1", 4, "2026-12-02T08:30:00Z"),
                ]),
                Some(&previous),
                Some("2026-12-02T08:30:00Z"),
            ),
            // A newly watched image counts.
            (
                manifest(&[
                    ("web:v1", 1, "2026-12-01T08:00:00Z"),
                    ("new:v1", 5, "2026-12-02T10:00:00Z"),
                ]),
                Some(&previous),
                Some("2026-12-02T10:00:00Z"),
            ),
            // No previous AMI: every image is new.
            (
                manifest(&[("web:v1", 1, "2026-12-01T08:00:00Z")]),
                None,
                Some("2026-12-01T08:00:00Z"),
            ),
        ];
        for (new, previous, expected) in table {
            assert_eq!(oldest_new_push(&new, previous), expected.map(at));
        }
    }

    #[test]
    fn latency_is_in_seconds_and_never_negative() {
        let since = at("2026-12-02T09:00:00Z");
        assert!((latency_seconds(since, at("2026-12-02T09:40:30.250Z")) - 2430.25).abs() < 1e-9);
        assert!(latency_seconds(since, at("2026-12-02T08:59:59Z")).abs() < 1e-9);
    }
}
