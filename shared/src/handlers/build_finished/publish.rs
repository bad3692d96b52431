//! Publishing: each region's AMI to the parameter, labelled with the build (or rollback) that
//! put it there, then every configured group refreshed.

use std::time::Instant;

use chrono::{DateTime, Utc};
use prepull_core::config::FleetSettings;
use prepull_core::launch_template::Expected;
use prepull_core::parameter::{
    ParameterAction, PublishStep, RegionState, RegionalAmi, Supersede, decide_publish,
    describe_version, needs_label,
};

use super::refresh::{failed, refresh_group};
use super::{ParameterUpdate, Summary};
use crate::aws::{autoscaling, ssm};
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::launch_template::{LaunchCheck, problems_by_group};
use crate::metrics;
use prepull_core::metrics::Metric;

/// What a failure outside the home region does: a publish fails the invocation (Lambda
/// retries it whole); a rollback records it and still rolls the home region back, which is
/// what the fleet launches from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OtherRegions {
    FailTheRun,
    RecordFailures,
}

/// How one publish goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Publish<'a> {
    /// The label the written version gets: the build's, or the rollback's.
    pub label: Option<&'a str>,
    pub supersede: Supersede,
    pub other_regions: OtherRegions,
    pub dry_run: bool,
    /// Bounds the wait for a cancelled refresh to end.
    pub deadline: Instant,
    /// Where the push-to-AMI latency starts, recorded when the home region takes the AMI: the
    /// build's `prepull:oldest-new-push` tag (none for a rollback).
    pub latency_from: Option<DateTime<Utc>>,
    /// The AMI's root volume in GiB, which each group's launch template must leave room for.
    pub ami_root_gib: Option<i32>,
}

/// Writes one region's AMI to the parameter and labels it; returns what it did and when the
/// parameter took the AMI.
async fn publish_in_region(
    common: &Common,
    settings: &FleetSettings,
    target: &RegionalAmi,
    publish: &Publish<'_>,
) -> Result<(ParameterUpdate, Option<DateTime<Utc>>), PrepullError> {
    let client = common.clients.ssm_in(&target.region);
    let parameter = &settings.parameter;
    let current = ssm::get(&client, parameter).await?;
    let labelled_version = match publish.label {
        Some(label) => ssm::get(&client, &format!("{parameter}:{label}"))
            .await?
            .map(|v| v.version),
        None => None,
    };
    let step = decide_publish(
        &target.ami,
        RegionState {
            current: current.as_ref().map(|c| (c.value.as_str(), c.version)),
            labelled_version,
        },
        publish.supersede,
        publish.dry_run,
    );
    // Taken before the write, not after the wait for it to land: a refresh started meanwhile
    // rolls this AMI out.
    let mut written_at = None;
    let version = match step {
        PublishStep::AlreadyCurrent { version } | PublishStep::Superseded { version } => {
            Some(version)
        }
        PublishStep::WouldWrite => None,
        PublishStep::Write => {
            written_at = Some(common.clock.now());
            let version = ssm::put_ami(
                &client,
                parameter,
                &target.ami,
                &describe_version(publish.label),
            )
            .await?;
            let until = (Instant::now() + settings.confirm_timeout).min(publish.deadline);
            let landed = ssm::written(
                &client,
                parameter,
                version,
                &target.ami,
                until,
                settings.confirm_interval,
            )
            .await?;
            if !landed {
                return Err(PrepullError::ValueNotAccepted {
                    parameter: parameter.clone(),
                    region: target.region.clone(),
                    ami: target.ami.clone(),
                    version,
                });
            }
            metrics::count_in_region(Metric::Publishes, &target.region);
            Some(version)
        }
    };
    if let PublishStep::Superseded { .. } = step {
        tracing::warn!(region = %target.region, ami = %target.ami, "this build was published before and has since been replaced; not publishing it again");
    }
    let mut note = None;
    if let (Some(label), Some(holding)) = (publish.label, version)
        && needs_label(step, version, labelled_version, publish.dry_run)
        && ssm::label(&client, parameter, holding, label).await? == ssm::Labelled::VersionFull
    {
        // Only a version that already held the AMI can be full (a new one has no label yet):
        // the label stays where it was, and the AMI is published all the same.
        let stays = labelled_version.map_or_else(
            || "is on no version".to_owned(),
            |v| format!("stays on version {v}"),
        );
        tracing::warn!(region = %target.region, version = holding, label, "the version holding the AMI already has SSM's 10 labels; the label was not moved");
        note = Some(format!(
            "version {holding} already holds SSM's 10 labels, so {label} {stays}"
        ));
    }
    let published_at = match step {
        PublishStep::Write => written_at,
        PublishStep::WouldWrite => Some(common.clock.now()),
        PublishStep::AlreadyCurrent { .. } | PublishStep::Superseded { .. } => {
            current.and_then(|c| c.modified)
        }
    };
    let update = ParameterUpdate {
        region: target.region.clone(),
        ami: target.ami.clone(),
        action: step.action(),
        version,
        label: publish.label.map(str::to_owned),
        error: None,
        note,
    };
    Ok((update, published_at))
}

/// Writes each region's AMI to the parameter (skipping a region that already holds it), then
/// refreshes every configured group, unless every region found this build superseded.
pub(super) async fn publish_and_refresh(
    common: &Common,
    settings: &FleetSettings,
    amis: &[RegionalAmi],
    publish: &Publish<'_>,
    summary: &mut Summary,
) -> Result<(), PrepullError> {
    let home = common.config.pipeline.region();
    let mut published_at = None;
    for target in amis {
        match publish_in_region(common, settings, target, publish).await {
            Ok((update, at)) => {
                if target.region == home {
                    published_at = at;
                    if let (Some(since), Some(at), true) = (
                        publish.latency_from,
                        at,
                        prepull_core::metrics::is_publish(update.action),
                    ) {
                        metrics::record(
                            Metric::PushToAmiLatency,
                            prepull_core::metrics::latency_seconds(since, at),
                        );
                    }
                }
                summary.parameters.push(update);
            }
            Err(error)
                if target.region != home
                    && publish.other_regions == OtherRegions::RecordFailures =>
            {
                tracing::error!(region = %target.region, error = %error, "the parameter in this region was not written; carrying on to the home region");
                summary.parameters.push(ParameterUpdate {
                    region: target.region.clone(),
                    ami: target.ami.clone(),
                    action: ParameterAction::Failed,
                    version: None,
                    label: publish.label.map(str::to_owned),
                    error: Some(error.to_string()),
                    note: None,
                });
            }
            Err(error) => return Err(error),
        }
    }
    if summary
        .parameters
        .iter()
        .all(|p| p.action == ParameterAction::Superseded)
    {
        return Ok(());
    }
    if settings.asg_names.is_empty() {
        return Ok(());
    }
    let check = LaunchCheck {
        expected: Expected {
            parameter: &settings.parameter,
            ami_root_gib: publish.ami_root_gib,
        },
        ami: amis
            .iter()
            .find(|a| a.region == home)
            .map(|a| a.ami.as_str()),
    };
    let launches =
        match autoscaling::launches(common.clients.autoscaling(), &settings.asg_names).await {
            Ok(launches) => launches,
            Err(error) => {
                // Every group fails alike; a retryable cause makes Lambda retry the invocation.
                for group in &settings.asg_names {
                    let outcome = failed(group, &error);
                    metrics::count(Metric::RefreshesFailed, 1);
                    summary.refreshes.push(outcome);
                }
                return Ok(());
            }
        };
    for (group, launch) in problems_by_group(common, settings, &launches, check).await {
        let outcome = refresh_group(
            common,
            settings,
            &group,
            launch,
            published_at,
            publish.dry_run,
            publish.deadline,
        )
        .await;
        if let Some(metric) = prepull_core::metrics::for_refresh(outcome.outcome) {
            metrics::count(metric, 1);
        }
        summary.refreshes.push(outcome);
    }
    Ok(())
}
