//! One group's refresh, carried out as [`prepull_core::refresh::decide_refresh`] decides.

use std::time::Instant;

use chrono::{DateTime, Utc};
use prepull_core::config::FleetSettings;
use prepull_core::launch_template::Misconfiguration;
use prepull_core::refresh::{RefreshDecision, RefreshResult, decide_refresh};

use super::RefreshOutcome;
use crate::aws::autoscaling;
use crate::aws::errors::aws_error;
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::launch_template::GroupProblems;

fn outcome(
    group: &str,
    result: RefreshResult,
    refresh_id: Option<String>,
    cancelled: Option<String>,
) -> RefreshOutcome {
    RefreshOutcome {
        asg: group.to_owned(),
        outcome: result,
        refresh_id,
        cancelled_refresh_id: cancelled,
        error: None,
        misconfigured: Vec::new(),
        retryable: false,
    }
}

fn misconfigured(group: &str, problems: Vec<Misconfiguration>) -> RefreshOutcome {
    for problem in &problems {
        tracing::error!(asg = group, problem = problem.kind(), detail = %problem, "this group cannot take the AMI; no refresh started");
    }
    RefreshOutcome {
        misconfigured: problems,
        ..outcome(group, RefreshResult::Misconfigured, None, None)
    }
}

pub(super) fn failed(group: &str, error: &PrepullError) -> RefreshOutcome {
    tracing::error!(asg = group, error = %error, "instance refresh failed");
    RefreshOutcome {
        error: Some(error.to_string()),
        retryable: error.is_retryable(),
        ..outcome(group, RefreshResult::Failed, None, None)
    }
}

/// Refreshes one group after the parameter took its AMI at `published_at`, once its launch
/// template was found able to take that AMI (`launch`). A failure is reported in the outcome,
/// not returned: the other groups still get their refresh.
pub(super) async fn refresh_group(
    common: &Common,
    settings: &FleetSettings,
    group: &str,
    launch: GroupProblems,
    published_at: Option<DateTime<Utc>>,
    dry_run: bool,
    deadline: Instant,
) -> RefreshOutcome {
    match launch {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => return misconfigured(group, problems),
        Err(error) => return failed(group, &error),
    }
    let client = common.clients.autoscaling();
    let refreshes = match autoscaling::recent_refreshes(client, group).await {
        Ok(refreshes) => refreshes,
        Err(error) => return failed(group, &error),
    };
    let cancelled = match decide_refresh(&refreshes, published_at, settings.in_progress, dry_run) {
        RefreshDecision::Leave { result, refresh_id } => {
            return outcome(group, result, Some(refresh_id), None);
        }
        RefreshDecision::WouldReplace { cancel } => {
            return outcome(group, RefreshResult::WouldReplace, None, Some(cancel));
        }
        RefreshDecision::WouldStart => {
            return outcome(group, RefreshResult::WouldStart, None, None);
        }
        RefreshDecision::Start => None,
        RefreshDecision::Replace { cancel } => {
            if let Err(error) = autoscaling::cancel_refresh(client, group).await {
                return failed(group, &error);
            }
            Some(cancel)
        }
        RefreshDecision::AwaitCancelled { cancelled } => Some(cancelled),
    };
    loop {
        match autoscaling::start_refresh(client, group, settings).await {
            Ok(id) => {
                tracing::info!(
                    asg = group,
                    refresh = id.as_deref(),
                    "instance refresh started"
                );
                let result = if cancelled.is_some() {
                    RefreshResult::Replaced
                } else {
                    RefreshResult::Started
                };
                return outcome(group, result, id, cancelled);
            }
            // The cancelled refresh is still winding down: wait for it, within the budget.
            Err(error) if cancelled.is_some() && autoscaling::is_in_progress(&error) => {
                if Instant::now() + settings.poll_interval >= deadline {
                    let mut result = failed(group, &aws_error("StartInstanceRefresh", error));
                    result.retryable = true;
                    return result;
                }
                tokio::time::sleep(settings.poll_interval).await;
            }
            Err(error) => return failed(group, &aws_error("StartInstanceRefresh", error)),
        }
    }
}
