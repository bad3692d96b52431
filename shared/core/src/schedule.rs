//! The calendar and patch-day's decision: Patch Tuesday, patch day, and the conditions under
//! which a scheduled or forced run starts a build.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use serde::Serialize;

use crate::build::{
    BuildSummary, BuildToken, COMPONENT_VERSION_TAG, DueBuild, MANIFEST_TAG, REASON_TAG,
    TRIGGER_TAG, newest_available,
};
use crate::config::PatchDaySettings;

/// Patch Tuesday: the second Tuesday of the month.
pub fn patch_tuesday(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Tue, 2)
}

/// Patch day: Patch Tuesday plus `offset_days`, when AWS has published patched AMIs.
pub fn patch_day(year: i32, month: u32, offset_days: u32) -> Option<NaiveDate> {
    patch_tuesday(year, month)?.checked_add_days(chrono::Days::new(u64::from(offset_days)))
}

/// One reason to build, and whether it holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub name: &'static str,
    pub holds: bool,
    pub detail: String,
}

/// The facts the decision needs, all read before deciding.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub settings: PatchDaySettings,
    pub builds: &'a [BuildSummary],
    pub manifest_changed: Option<&'a str>,
    pub parent_reference: Option<&'a str>,
    pub parent_now: Option<&'a str>,
    pub forced: Option<&'a str>,
}

fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Evaluates every condition, in a fixed order. Pure: the clock is an input.
pub fn evaluate(facts: &Facts<'_>) -> Vec<Condition> {
    let newest = newest_available(facts.builds);
    let newest_text = newest.map_or_else(
        || "no AVAILABLE image yet".to_owned(),
        |(at, b)| format!("newest image {} built {}", b.arn, date(at)),
    );
    let mut conditions = Vec::new();

    conditions.push(Condition {
        name: "manifest-changed",
        holds: facts.manifest_changed.is_some(),
        detail: facts.manifest_changed.map_or_else(
            || "the cache component matches ECR and is built".to_owned(),
            str::to_owned,
        ),
    });

    let today = facts.now.date_naive();
    let this_patch_day = patch_day(today.year(), today.month(), facts.settings.offset_days);
    let patch_day_holds = this_patch_day.is_some_and(|day| {
        let start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        today >= day && newest.is_none_or(|(at, _)| start.is_some_and(|s| at < s))
    });
    conditions.push(Condition {
        name: "patch-day",
        holds: patch_day_holds,
        detail: format!(
            "patch day is {}; {newest_text}",
            this_patch_day.map_or_else(|| "unknown".to_owned(), |d| d.to_string())
        ),
    });

    let parent = match (facts.parent_reference, facts.parent_now) {
        (Some(reference), _) if !reference.starts_with("ssm:") => Condition {
            name: "parent-image",
            holds: false,
            detail: format!("the parent image {reference} is not an ssm: parameter"),
        },
        (_, None) => Condition {
            name: "parent-image",
            holds: false,
            detail: "the parent image parameter has no value".to_owned(),
        },
        (_, Some(now)) => match newest.and_then(|(_, b)| b.parent_image.as_deref()) {
            Some(recorded) if recorded != now => Condition {
                name: "parent-image",
                holds: true,
                detail: format!(
                    "the parent image is now {now}; the newest image was built from {recorded}"
                ),
            },
            Some(recorded) => Condition {
                name: "parent-image",
                holds: false,
                detail: format!("the parent image is still {recorded}"),
            },
            None => Condition {
                name: "parent-image",
                holds: false,
                detail: format!(
                    "the parent image is {now}; no image records what it was built from"
                ),
            },
        },
    };
    conditions.push(parent);

    let max_age = Duration::days(i64::from(facts.settings.max_image_age_days));
    let too_old = newest.is_none_or(|(at, _)| facts.now - at > max_age);
    conditions.push(Condition {
        name: "max-image-age",
        holds: too_old,
        detail: format!(
            "limit {} days; {newest_text}",
            facts.settings.max_image_age_days
        ),
    });

    conditions.push(Condition {
        name: "forced",
        holds: facts.forced.is_some(),
        detail: facts.forced.map_or_else(
            || "not forced".to_owned(),
            |reason| format!("forced: {reason}"),
        ),
    });
    conditions
}

/// Why the manifest asks for a build: a new component version, or the latest version never
/// built (a run that failed after writing it). `None` when an image already carries it.
pub fn manifest_change(
    planned_version: Option<&str>,
    latest_version: Option<&str>,
    built: bool,
) -> Option<String> {
    match (planned_version, built) {
        (Some(planned), _) => Some(format!("new cache component version {planned}")),
        (None, false) => Some(format!(
            "no image is built from cache component version {}",
            latest_version.unwrap_or("?")
        )),
        (None, true) => None,
    }
}

/// What a patch-day run builds, from what it found.
#[derive(Debug, Clone, Copy)]
pub struct BuildInputs<'a> {
    pub now: DateTime<Utc>,
    /// The conditions that hold.
    pub reasons: &'a [&'static str],
    pub running: bool,
    pub forced: Option<&'a str>,
    pub request_id: &'a str,
    pub manifest_hash: &'a str,
    pub component_version: &'a str,
}

/// A build when some condition holds and none is running. Scheduled runs on one day
/// converge on one build for the same request; each forced invocation is its own build.
pub fn plan_build(inputs: &BuildInputs<'_>) -> Option<DueBuild> {
    if inputs.running || inputs.reasons.is_empty() {
        return None;
    }
    let token = match inputs.forced {
        Some(_) => BuildToken::Exact(inputs.request_id.to_owned()),
        None => BuildToken::Derived(format!("s{}", inputs.now.format("%Y%m%d"))),
    };
    let mut tags = vec![
        (MANIFEST_TAG.to_owned(), inputs.manifest_hash.to_owned()),
        (TRIGGER_TAG.to_owned(), inputs.reasons.join("+")),
        (
            COMPONENT_VERSION_TAG.to_owned(),
            inputs.component_version.to_owned(),
        ),
    ];
    if let Some(reason) = inputs.forced {
        tags.push((REASON_TAG.to_owned(), reason.to_owned()));
    }
    Some(DueBuild { token, tags })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::ImageBuilderArn;
    use crate::build::BuildStatus;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn patch_tuesday_is_the_second_tuesday_across_years() {
        let cases = [
            (2023, 11, "2023-11-14"), // the 1st is a Wednesday
            (2024, 1, "2024-01-09"),
            (2024, 10, "2024-10-08"), // the 1st is a Tuesday
            (2025, 1, "2025-01-14"),  // the 1st is a Wednesday
            (2025, 4, "2025-04-08"),  // the 1st is a Tuesday
            (2026, 7, "2026-07-14"),  // the 1st is a Wednesday
            (2026, 11, "2026-11-10"),
            (2026, 12, "2026-12-08"), // the 1st is a Tuesday
            (2027, 6, "2027-06-08"),  // the 1st is a Tuesday
            (2028, 2, "2028-02-08"),  // a leap year's February, the 1st a Tuesday
        ];
        for (year, month, expected) in cases {
            assert_eq!(
                patch_tuesday(year, month),
                Some(day(expected)),
                "{year}-{month}"
            );
            assert_eq!(
                patch_day(year, month, 1),
                Some(day(expected).succ_opt().unwrap())
            );
        }
        assert_eq!(patch_day(2026, 12, 0), Some(day("2026-12-08")));
        assert_eq!(patch_day(2026, 12, 7), Some(day("2026-12-15")));
    }

    fn build(status: BuildStatus, created: &str, parent: Option<&str>) -> BuildSummary {
        BuildSummary {
            arn: ImageBuilderArn::parse(&format!(
                "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0/{}",
                created.len()
            ))
            .unwrap(),
            status,
            manifest_hash: None,
            parent_image: parent.map(str::to_owned),
            date_created: Some(
                DateTime::parse_from_rfc3339(created)
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            component_version: None,
        }
    }

    fn holding(conditions: &[Condition]) -> Vec<&'static str> {
        conditions
            .iter()
            .filter(|c| c.holds)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn conditions_follow_the_calendar_the_parent_and_the_age() {
        let settings = PatchDaySettings {
            offset_days: 1,
            max_image_age_days: 35,
        };
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let builds = [
            build(
                BuildStatus::Available,
                "2026-11-20T10:00:00Z",
                Some("ami-1"),
            ),
            build(BuildStatus::Failed, "2026-12-09T01:00:00Z", None),
        ];
        let facts = |now: &str, parent_now: Option<&'static str>| Facts {
            now: at(now),
            settings,
            builds: &builds,
            manifest_changed: None,
            parent_reference: Some("ssm:/aws/service/ami-windows-latest/x"),
            parent_now,
            forced: None,
        };
        assert!(
            holding(&evaluate(&facts("2026-12-08T12:00:00Z", Some("ami-1")))).is_empty(),
            "Patch Tuesday itself is not patch day"
        );
        assert_eq!(
            holding(&evaluate(&facts("2026-12-09T00:00:00Z", Some("ami-1")))),
            ["patch-day"]
        );
        assert_eq!(
            holding(&evaluate(&facts("2026-12-20T00:00:00Z", Some("ami-2")))),
            ["patch-day", "parent-image"]
        );
        assert_eq!(
            holding(&evaluate(&facts("2026-12-26T00:00:00Z", Some("ami-1")))),
            ["patch-day", "max-image-age"]
        );
        let conditions = evaluate(&facts("2026-12-01T00:00:00Z", Some("ami-1")));
        assert_eq!(
            conditions.iter().map(|c| c.name).collect::<Vec<_>>(),
            [
                "manifest-changed",
                "patch-day",
                "parent-image",
                "max-image-age",
                "forced"
            ]
        );
        let fresh = [build(
            BuildStatus::Available,
            "2026-12-09T06:00:00Z",
            Some("ami-1"),
        )];
        let after = Facts {
            builds: &fresh,
            ..facts("2026-12-09T18:00:00Z", Some("ami-1"))
        };
        assert!(
            holding(&evaluate(&after)).is_empty(),
            "built on patch day: done for the month"
        );
        let none: [BuildSummary; 0] = [];
        let first = Facts {
            builds: &none,
            ..facts("2026-12-01T00:00:00Z", None)
        };
        assert_eq!(
            holding(&evaluate(&first)),
            ["max-image-age"],
            "never built: too old by definition"
        );
    }

    #[test]
    fn the_manifest_asks_for_a_build_until_an_image_carries_it() {
        let cases = [
            (
                Some("1.0.4"),
                Some("1.0.3"),
                true,
                Some("new cache component version 1.0.4"),
            ),
            (
                None,
                Some("1.0.3"),
                false,
                Some("no image is built from cache component version 1.0.3"),
            ),
            (None, Some("1.0.3"), true, None),
        ];
        for (planned, latest, built, expected) in cases {
            assert_eq!(manifest_change(planned, latest, built).as_deref(), expected);
        }
    }

    #[test]
    fn scheduled_builds_converge_per_day_and_forced_ones_are_each_new() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let inputs = |now: &'static str, forced: Option<&'static str>, request_id: &'static str| {
            BuildInputs {
                now: at(now),
                reasons: &["patch-day"],
                running: false,
                forced,
                request_id,
                manifest_hash: "h",
                component_version: "1.0.3",
            }
        };
        let token = |i: BuildInputs<'_>| {
            plan_build(&i)
                .unwrap()
                .request(None, Some("ami-1"))
                .client_token
        };
        assert_eq!(
            token(inputs("2026-12-09T01:00:00Z", None, "r1")),
            token(inputs("2026-12-09T23:00:00Z", None, "r2"))
        );
        assert_ne!(
            token(inputs("2026-12-09T01:00:00Z", None, "r1")),
            token(inputs("2026-12-10T01:00:00Z", None, "r1"))
        );
        assert_eq!(
            token(inputs("2026-12-09T01:00:00Z", Some("cve"), "r1")),
            "r1"
        );
        let forced = plan_build(&inputs("2026-12-09T01:00:00Z", Some("cve"), "r1")).unwrap();
        assert!(
            forced
                .tags
                .contains(&(REASON_TAG.to_owned(), "cve".to_owned()))
        );
        let running = BuildInputs {
            running: true,
            ..inputs("2026-12-09T01:00:00Z", None, "r1")
        };
        assert_eq!(plan_build(&running), None);
        let nothing = BuildInputs {
            reasons: &[],
            ..inputs("2026-12-09T01:00:00Z", None, "r1")
        };
        assert_eq!(plan_build(&nothing), None);
    }
}
