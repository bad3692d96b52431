//! patch-day: prepull's clock and its "rebuild now" button. Every run reconciles the cache
//! with ECR, then decides whether to build: on patch day, when the parent image moved, when
//! the newest image is too old, when the manifest changed, or when an operator forces it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Common;
use crate::config::ConfigError;
use crate::error::PrepullError;
use crate::image::quote;
use crate::imagebuilder::{self, RecipeChange};
use crate::plan::{self, BuildSummary, ComponentPlan, RUNNING_STATUSES, StartedBuild};
use crate::reconcile::{
    BuildToken, ComponentOutcome, Resolve, build_request, current_parent_image, plan_pipeline,
    reconcile_component, start_build,
};

/// Patch Tuesday: the second Tuesday of the month.
pub fn patch_tuesday(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Tue, 2)
}

/// Patch day: Patch Tuesday plus `offset_days`, when AWS has published patched AMIs.
pub fn patch_day(year: i32, month: u32, offset_days: u32) -> Option<NaiveDate> {
    patch_tuesday(year, month)?.checked_add_days(chrono::Days::new(u64::from(offset_days)))
}

/// patch-day's own settings, read at init like the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchDaySettings {
    pub offset_days: u32,
    pub max_image_age_days: u32,
}

impl PatchDaySettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |variable: &'static str, default: u32, max: u32| -> Result<u32, ConfigError> {
            match lookup(variable)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => Ok(default),
                Some(text) => text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| ConfigError {
                        variable,
                        problem: format!(
                            "{} is not a whole number of days from 0 to {max}",
                            quote(&text)
                        ),
                    }),
            }
        };
        Ok(Self {
            offset_days: number("PREPULL_PATCH_DAY_OFFSET_DAYS", 1, 14)?,
            max_image_age_days: number("PREPULL_MAX_IMAGE_AGE_DAYS", 35, 3650)?,
        })
    }
}

/// What the function was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub forced: Option<String>,
    pub dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    source: Option<String>,
    force: Option<bool>,
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Reads `{"source":"schedule"}` or `{"force":true,"reason":"…"}`, each with an optional
/// `"dry_run"`. The reason ends up as an image tag, so it must fit AWS's tag grammar.
pub fn read_request(input: &Value) -> Result<Request, PrepullError> {
    let invalid = |message: String| PrepullError::InvalidInput(message);
    let payload: Payload = serde_json::from_value(input.clone()).map_err(|e| {
        invalid(format!(
            "expected {{\"source\":\"schedule\"}} or {{\"force\":true,\"reason\":\"…\"}}: {e}"
        ))
    })?;
    match (payload.source.as_deref(), payload.force) {
        (Some("schedule"), None) if payload.reason.is_none() => Ok(Request { forced: None, dry_run: payload.dry_run }),
        (None, Some(true)) => {
            let reason = payload.reason.ok_or_else(|| invalid("field `reason` is required with \"force\": true".to_owned()))?;
            let reason = reason.trim().to_owned();
            let allowed = |c: char| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c);
            if reason.is_empty() || reason.chars().count() > 200 || !reason.chars().all(allowed) {
                return Err(invalid(format!(
                    "field `reason` is {}: use 1 to 200 of letters, digits, spaces and _ . : / = + - @",
                    quote(&reason)
                )));
            }
            Ok(Request { forced: Some(reason), dry_run: payload.dry_run })
        }
        (Some(other), _) if other != "schedule" => Err(invalid(format!("field `source` is {}, expected \"schedule\"", quote(other)))),
        (_, Some(false)) => Err(invalid("field `force` is false; a scheduled run sends {\"source\":\"schedule\"}".to_owned())),
        _ => Err(invalid("send either {\"source\":\"schedule\"} or {\"force\":true,\"reason\":\"…\"}, not both or neither".to_owned())),
    }
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
    let newest = facts
        .builds
        .iter()
        .filter(|b| b.status == "AVAILABLE")
        .filter_map(|b| Some((b.date_created?, b)))
        .max_by_key(|(at, _)| *at);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    BuildStarted,
    /// The same build was requested before and ended without an image; Image Builder
    /// returned that build and started nothing (see [`StartedBuild::Earlier`]).
    AlreadyAttempted,
    UpToDate,
    BuildRunning,
}

/// The plan a dry run returns and a real run carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub component: Option<ComponentPlan>,
    pub recipe: Option<RecipeChange>,
    /// The build to start, if any: its client token and tags.
    pub build: Option<PlannedBuild>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedBuild {
    pub client_token: String,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub dry_run: bool,
    /// The conditions that hold.
    pub reasons: Vec<&'static str>,
    /// Every condition evaluated, holding or not.
    pub conditions: Vec<Condition>,
    pub component_version: Option<String>,
    pub image_build_version_arn: Option<String>,
    /// With `already-attempted`: how that earlier build ended.
    pub earlier_build_status: Option<String>,
    pub running_build: Option<String>,
    pub images: Vec<String>,
    pub unresolved: Vec<String>,
    pub plan: Plan,
}

/// Handles one run. `request_id` makes a forced build's client token unique; `now` is the
/// clock, injected so tests can pick the day.
pub async fn handle(
    common: &Common,
    settings: PatchDaySettings,
    input: Value,
    request_id: &str,
    now: DateTime<Utc>,
) -> Result<Summary, PrepullError> {
    let request = read_request(&input)?;
    let trigger = match &request.forced {
        Some(reason) => format!("forced: {reason}"),
        None => "scheduled reconcile".to_owned(),
    };
    let component: ComponentOutcome =
        reconcile_component(common, &[], Resolve::All, &trigger, request.dry_run, now).await?;
    let (view, recipe_change) = plan_pipeline(common, &component).await?;
    let mut recipe_arn = None;
    if !request.dry_run
        && let (Some(change), Some(build_arn)) = (&recipe_change, &component.build_arn)
    {
        recipe_arn = Some(
            imagebuilder::apply_recipe_change(
                &common.clients.imagebuilder,
                &view,
                change,
                build_arn,
                &component.manifest_hash,
            )
            .await?,
        );
    }
    let builds = imagebuilder::list_builds(
        &common.clients.imagebuilder,
        common.config.pipeline.as_str(),
    )
    .await?;
    let parent_now = current_parent_image(common, &view).await?;
    // A version written by an earlier run that failed before starting its build still counts:
    // no image carries the latest manifest yet.
    let built = builds.iter().any(|b| {
        b.manifest_hash.as_deref() == Some(component.manifest_hash.as_str())
            && (b.status == "AVAILABLE" || RUNNING_STATUSES.contains(&b.status.as_str()))
    });
    let manifest_changed = match (&component.planned, built) {
        (Some(planned), _) => Some(format!("new cache component version {}", planned.version)),
        (None, false) => Some(format!(
            "no image is built from cache component version {}",
            component.version.as_deref().unwrap_or("?")
        )),
        (None, true) => None,
    };
    let conditions = evaluate(&Facts {
        now,
        settings,
        builds: &builds,
        manifest_changed: manifest_changed.as_deref(),
        parent_reference: view.recipe.parent_image(),
        parent_now: parent_now.as_deref(),
        forced: request.forced.as_deref(),
    });
    let reasons: Vec<&'static str> = conditions
        .iter()
        .filter(|c| c.holds)
        .map(|c| c.name)
        .collect();
    let running = builds
        .iter()
        .find(|b| RUNNING_STATUSES.contains(&b.status.as_str()))
        .map(|b| b.arn.clone());

    let version = component.version.clone().unwrap_or_default();
    let build = (running.is_none() && !reasons.is_empty()).then(|| {
        let token = match &request.forced {
            // Each forced invocation is its own build, even with the same reason.
            Some(_) => BuildToken::Exact(request_id.to_owned()),
            // Scheduled runs on one day converge on one build for the same request.
            None => BuildToken::Derived(format!("s{}", now.format("%Y%m%d"))),
        };
        let mut tags = vec![
            (
                plan::MANIFEST_TAG.to_owned(),
                component.manifest_hash.clone(),
            ),
            (plan::TRIGGER_TAG.to_owned(), reasons.join("+")),
            (plan::COMPONENT_VERSION_TAG.to_owned(), version.clone()),
        ];
        if let Some(reason) = &request.forced {
            tags.push((plan::REASON_TAG.to_owned(), reason.clone()));
        }
        let (client_token, tags) = build_request(token, tags, parent_now.as_deref());
        PlannedBuild { client_token, tags }
    });
    let mut outcome = match (&running, &build) {
        (Some(_), _) => Outcome::BuildRunning,
        (None, Some(_)) => Outcome::BuildStarted,
        (None, None) => Outcome::UpToDate,
    };
    let mut image_build_version_arn = None;
    let mut earlier_build_status = None;
    if !request.dry_run
        && let Some(build) = &build
    {
        match start_build(common, &build.client_token, &build.tags, &builds).await? {
            StartedBuild::New { arn } => image_build_version_arn = Some(arn),
            StartedBuild::Earlier { arn, status } => {
                image_build_version_arn = Some(arn);
                earlier_build_status = Some(status);
                outcome = Outcome::AlreadyAttempted;
            }
        }
    }
    if recipe_arn.is_some() {
        tracing::info!(
            recipe = recipe_arn.as_deref(),
            "recipe follows the new component version"
        );
    }
    tracing::info!(outcome = ?outcome, reasons = ?reasons, dry_run = request.dry_run, "patch-day run done");
    Ok(Summary {
        outcome,
        dry_run: request.dry_run,
        reasons,
        conditions,
        component_version: component.version.clone(),
        image_build_version_arn,
        earlier_build_status,
        running_build: running,
        images: component.images.clone(),
        unresolved: component.unresolved.clone(),
        plan: Plan {
            component: component.planned.clone(),
            recipe: recipe_change,
            build,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn settings_default_and_name_bad_values() {
        assert_eq!(
            PatchDaySettings::from_lookup(|_| None).unwrap(),
            PatchDaySettings {
                offset_days: 1,
                max_image_age_days: 35
            }
        );
        let error = PatchDaySettings::from_lookup(|n| {
            (n == "PREPULL_MAX_IMAGE_AGE_DAYS").then(|| "-3".to_owned())
        })
        .unwrap_err();
        assert_eq!(error.variable, "PREPULL_MAX_IMAGE_AGE_DAYS");
        let error = PatchDaySettings::from_lookup(|n| {
            (n == "PREPULL_PATCH_DAY_OFFSET_DAYS").then(|| "30".to_owned())
        })
        .unwrap_err();
        assert_eq!(error.variable, "PREPULL_PATCH_DAY_OFFSET_DAYS");
    }

    #[test]
    fn payloads_are_read_strictly() {
        assert_eq!(
            read_request(&json!({"source": "schedule"})).unwrap(),
            Request {
                forced: None,
                dry_run: false
            }
        );
        assert_eq!(
            read_request(&json!({"source": "schedule", "dry_run": true})).unwrap(),
            Request {
                forced: None,
                dry_run: true
            }
        );
        assert_eq!(
            read_request(
                &json!({"force": true, "reason": "CVE-2026-1234 hotfix", "dry_run": false})
            )
            .unwrap(),
            Request {
                forced: Some("CVE-2026-1234 hotfix".to_owned()),
                dry_run: false
            }
        );
        let bad = [
            (json!({}), "either"),
            (json!({"source": "cron"}), "source"),
            (json!({"force": true}), "reason"),
            (json!({"force": false, "reason": "x"}), "force"),
            (json!({"force": "yes", "reason": "x"}), "expected"),
            (json!({"force": true, "reason": "x'; calc"}), "reason"),
            (json!({"force": true, "reason": "a".repeat(201)}), "reason"),
            (
                json!({"source": "schedule", "force": true, "reason": "x"}),
                "either",
            ),
            (json!({"source": "schedule", "extra": 1}), "unknown field"),
            (json!([1]), "expected"),
        ];
        for (payload, needle) in bad {
            let error = read_request(&payload).unwrap_err().to_string();
            assert!(error.contains(needle), "{payload}: {error}");
        }
    }

    fn build(status: &str, created: &str, parent: Option<&str>) -> BuildSummary {
        BuildSummary {
            arn: format!("arn:{status}:{created}"),
            status: status.to_owned(),
            manifest_hash: None,
            parent_image: parent.map(str::to_owned),
            date_created: Some(
                DateTime::parse_from_rfc3339(created)
                    .unwrap()
                    .with_timezone(&Utc),
            ),
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
            build("AVAILABLE", "2026-11-20T10:00:00Z", Some("ami-1")),
            build("FAILED", "2026-12-09T01:00:00Z", None),
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
        let fresh = [build("AVAILABLE", "2026-12-09T06:00:00Z", Some("ami-1"))];
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
}
