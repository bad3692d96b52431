//! What operators send: patch-day's schedule and forced-rebuild payloads, and build-finished's
//! rollback and republish, each beside the event the same function receives.

use serde::Deserialize;
use serde_json::Value;

use crate::arn::ImageBuilderArn;
use crate::events::InvalidInput;
use crate::events::imagebuilder::{StateChange, read_state_change};
use crate::image::quote;

/// What patch-day was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchDayRequest {
    /// An operator's reason for a forced build; `None` for the schedule.
    pub forced: Option<String>,
    pub dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDayPayload {
    source: Option<String>,
    force: Option<bool>,
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// The longest reason a forced build may carry: it becomes an image tag value.
const REASON_LIMIT: usize = 200;

/// Reads `{"source":"schedule"}` or `{"force":true,"reason":"…"}`, each with an optional
/// `"dry_run"`. The reason ends up as an image tag, so it must fit AWS's tag grammar.
pub fn read_patch_day_request(input: &Value) -> Result<PatchDayRequest, InvalidInput> {
    let invalid = |message: String| InvalidInput(message);
    let payload: PatchDayPayload = serde_json::from_value(input.clone()).map_err(|e| {
        invalid(format!(
            "expected {{\"source\":\"schedule\"}} or {{\"force\":true,\"reason\":\"…\"}}: {e}"
        ))
    })?;
    match (payload.source.as_deref(), payload.force) {
        (Some("schedule"), None) if payload.reason.is_none() => Ok(PatchDayRequest {
            forced: None,
            dry_run: payload.dry_run,
        }),
        (None, Some(true)) => {
            let reason = payload.reason.ok_or_else(|| {
                invalid("field `reason` is required with \"force\": true".to_owned())
            })?;
            let reason = reason.trim().to_owned();
            let allowed = |c: char| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c);
            if reason.is_empty()
                || reason.chars().count() > REASON_LIMIT
                || !reason.chars().all(allowed)
            {
                return Err(invalid(format!(
                    "field `reason` is {}: use 1 to {REASON_LIMIT} of letters, digits, spaces and _ . : / = + - @",
                    quote(&reason)
                )));
            }
            Ok(PatchDayRequest {
                forced: Some(reason),
                dry_run: payload.dry_run,
            })
        }
        (Some(other), _) if other != "schedule" => Err(invalid(format!(
            "field `source` is {}, expected \"schedule\"",
            quote(other)
        ))),
        (_, Some(false)) => Err(invalid(
            "field `force` is false; a scheduled run sends {\"source\":\"schedule\"}".to_owned(),
        )),
        _ => Err(invalid(
            "send either {\"source\":\"schedule\"} or {\"force\":true,\"reason\":\"…\"}, not both or neither"
                .to_owned(),
        )),
    }
}

/// What build-finished was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildFinishedRequest {
    StateChange(StateChange),
    Rollback {
        dry_run: bool,
    },
    Republish {
        image_arn: ImageBuilderArn,
        dry_run: bool,
    },
    /// A read-only report of what is true now.
    Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorPayload {
    action: String,
    image: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Reads an "EC2 Image Builder Image State Change" event or an operator's payload
/// (`{"action":"rollback"}`, `{"action":"republish","image":"…"}`, `{"action":"status"}`).
pub fn read_build_finished_request(input: &Value) -> Result<BuildFinishedRequest, InvalidInput> {
    let invalid = |m: String| InvalidInput(m);
    if input.get("action").is_none() {
        return read_state_change(input).map(BuildFinishedRequest::StateChange);
    }
    let payload: OperatorPayload = serde_json::from_value(input.clone()).map_err(|e| {
        invalid(format!(
            "an operator payload is {{\"action\":\"rollback\"}}, {{\"action\":\"republish\",\"image\":\"…\"}} or {{\"action\":\"status\"}}: {e}"
        ))
    })?;
    match (payload.action.as_str(), payload.image) {
        ("rollback", None) => Ok(BuildFinishedRequest::Rollback {
            dry_run: payload.dry_run,
        }),
        ("republish", Some(image)) => Ok(BuildFinishedRequest::Republish {
            image_arn: ImageBuilderArn::image_build_version(&image)
                .map_err(|e| invalid(format!("field `image`: {e}")))?,
            dry_run: payload.dry_run,
        }),
        ("republish", None) => Err(invalid(
            "field `image` is required for republish".to_owned(),
        )),
        ("rollback", Some(_)) => Err(invalid("field `image` is not used by rollback".to_owned())),
        ("status", None) if !payload.dry_run => Ok(BuildFinishedRequest::Status),
        ("status", None) => Err(invalid(
            "field `dry_run` is not used by status, which never changes anything".to_owned(),
        )),
        ("status", Some(_)) => Err(invalid("field `image` is not used by status".to_owned())),
        (other, _) => Err(invalid(format!(
            "field `action` is {}, expected rollback, republish or status",
            quote(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::BuildStatus;

    const ARN: &str =
        "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull-windows-cache-recipe/1.0.0/3";

    fn event(status: &str, arn: &str) -> Value {
        json!({
            "version": "0", "id": "x", "detail-type": "EC2 Image Builder Image State Change", "source": "aws.imagebuilder",
            "account": "123456789012", "time": "2026-11-11T09:41:07Z", "region": "us-east-1", "resources": [arn],
            "detail": {"previous-state": {"status": "INTEGRATING"}, "state": {"status": status}},
        })
    }

    #[test]
    fn patch_day_payloads_are_read_strictly() {
        let good = [
            (json!({"source": "schedule"}), None, false),
            (json!({"source": "schedule", "dry_run": true}), None, true),
            (
                json!({"force": true, "reason": "CVE-2026-1234 hotfix", "dry_run": false}),
                Some("CVE-2026-1234 hotfix"),
                false,
            ),
        ];
        for (payload, forced, dry_run) in good {
            assert_eq!(
                read_patch_day_request(&payload).unwrap(),
                PatchDayRequest {
                    forced: forced.map(str::to_owned),
                    dry_run
                }
            );
        }
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
            let error = read_patch_day_request(&payload).unwrap_err().to_string();
            assert!(error.contains(needle), "{payload}: {error}");
        }
    }

    #[test]
    fn build_finished_requests_are_read_strictly() {
        let arn = ImageBuilderArn::parse(ARN).unwrap();
        assert_eq!(
            read_build_finished_request(&event("AVAILABLE", ARN)).unwrap(),
            BuildFinishedRequest::StateChange(StateChange {
                image_arn: arn.clone(),
                status: BuildStatus::Available,
                reason: None
            })
        );
        assert_eq!(
            read_build_finished_request(&json!({"action": "rollback"})).unwrap(),
            BuildFinishedRequest::Rollback { dry_run: false }
        );
        assert_eq!(
            read_build_finished_request(&json!({"action": "status"})).unwrap(),
            BuildFinishedRequest::Status
        );
        assert_eq!(
            read_build_finished_request(
                &json!({"action": "republish", "image": ARN, "dry_run": true})
            )
            .unwrap(),
            BuildFinishedRequest::Republish {
                image_arn: arn,
                dry_run: true
            }
        );
        for (input, needle) in [
            (
                event(
                    "AVAILABLE",
                    "arn:aws:imagebuilder:us-east-1:123456789012:image/x'; calc/1.0.0/1",
                ),
                "resources[0]",
            ),
            (event("AVAILABLE", "arn:aws:s3:::bucket"), "resources[0]"),
            (event("EXPLODED", ARN), "detail.state.status"),
            (json!({"source": "aws.ecr"}), "detail-type"),
            (
                json!({"source": "aws.ecr", "detail-type": "EC2 Image Builder Image State Change", "detail": {}}),
                "source",
            ),
            (json!({"action": "delete-everything"}), "action"),
            (json!({"action": "republish"}), "image"),
            (json!({"action": "status", "image": ARN}), "image"),
            (json!({"action": "status", "dry_run": true}), "dry_run"),
            (
                json!({"action": "stats"}),
                "expected rollback, republish or status",
            ),
            (
                json!({"action": "status", "verbose": true}),
                "unknown field",
            ),
            (
                json!({"action": "rollback", "force": true}),
                "unknown field",
            ),
        ] {
            let error = read_build_finished_request(&input).unwrap_err().to_string();
            assert!(error.contains(needle), "{input}: {error}");
        }
    }
}
