//! "EC2 Image Builder Image State Change" events, as EventBridge delivers them.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde_json::Value;

use crate::arn::ImageBuilderArn;
use crate::build::BuildStatus;
use crate::events::InvalidInput;
use crate::image::quote;

/// One image's move to a new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub image_arn: ImageBuilderArn,
    pub status: BuildStatus,
    pub reason: Option<String>,
}

/// The longest failure reason kept from an event.
const REASON_LIMIT: usize = 1000;

/// Reads a state-change event: the image build-version ARN from `resources[0]` and the new
/// status from `detail.state`.
pub fn read_state_change(input: &Value) -> Result<StateChange, InvalidInput> {
    let invalid = |m: String| InvalidInput(m);
    let envelope: EventBridgeEvent<Value> = serde_path_to_error::deserialize(input)
        .map_err(|e| invalid(format!("the EventBridge event cannot be read: {e}")))?;
    if envelope.source != "aws.imagebuilder" {
        return Err(invalid(format!(
            "field `source` is {}, expected aws.imagebuilder",
            quote(&envelope.source)
        )));
    }
    if envelope.detail_type != "EC2 Image Builder Image State Change" {
        return Err(invalid(format!(
            "field `detail-type` is {}",
            quote(&envelope.detail_type)
        )));
    }
    let missing = |field: &str| invalid(format!("field `{field}` is missing or not a string"));
    // An image state change names exactly one image ("EventBridge events that Image Builder
    // sends"); any other count is not such an event, and which image it means is a guess.
    let arn = match envelope.resources.as_deref() {
        Some([only]) => only,
        Some([]) | None => return Err(missing("resources[0]")),
        Some(more) => {
            return Err(invalid(format!(
                "field `resources` names {} images; an image state change names one",
                more.len()
            )));
        }
    };
    let image_arn = ImageBuilderArn::image_build_version(arn)
        .map_err(|e| invalid(format!("field `resources[0]`: {e}")))?;
    let status = envelope
        .detail
        .pointer("/state/status")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("detail.state.status"))?;
    let status = status
        .parse::<BuildStatus>()
        .map_err(|e| invalid(format!("field `detail.state.status`: {e}")))?;
    let reason = envelope
        .detail
        .pointer("/state/reason")
        .and_then(Value::as_str)
        .map(|r| r.chars().take(REASON_LIMIT).collect());
    Ok(StateChange {
        image_arn,
        status,
        reason,
    })
}
