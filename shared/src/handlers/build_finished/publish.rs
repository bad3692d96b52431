//! Publishing: each region's AMI to the parameter, labelled with the build (or rollback) that
//! put it there, then every configured group refreshed. Regions, and then groups, go side by
//! side where their order does not matter ([`publish_regions`], [`publish_and_refresh`]).

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
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
use crate::handlers::launch_template::{LaunchCheck, TemplateReads, read_templates};
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

/// One region's publish, as [`publish_in_region`] returns it.
type RegionResult = Result<(ParameterUpdate, Option<DateTime<Utc>>), PrepullError>;

/// Every region's publish, in `amis`' order. Each region's own calls stay one after another
/// (read, write, wait for the validation, label); the regions go side by side where that keeps
/// what their order meant:
///
/// - [`OtherRegions::FailTheRun`] (a build's publish, a republish): all at once. Each region
///   writes only its own parameter, and nothing one region decides comes from another (the
///   home region's `published_at` feeds only the refreshes, which start after every region).
///   Any failure still fails the run before a refresh, and the retry redoes only the regions
///   still missing, each deciding from what its parameter holds. The order in sequence was
///   GetImage's distribution order, which this code never chose: any mix of written and
///   unwritten regions a failure leaves side by side, a failure or a lost process could leave
///   in sequence too, under some distribution order.
/// - [`OtherRegions::RecordFailures`] (a rollback): every other region at once, then the home
///   region, alone. The home region goes last on purpose
///   ([`prepull_core::parameter::home_last`]): a retry sees the rollback in the home region's
///   history only once every other region's write has ended (written, or failed and
///   recorded), so a rollback stopped half way is finished, not started again.
async fn publish_regions(
    common: &Common,
    settings: &FleetSettings,
    amis: &[RegionalAmi],
    publish: &Publish<'_>,
) -> Vec<RegionResult> {
    let one = |target| publish_in_region(common, settings, target, publish);
    match publish.other_regions {
        OtherRegions::FailTheRun => join_all(amis.iter().map(one)).await,
        OtherRegions::RecordFailures => {
            let home = common.config.pipeline.region();
            let mut others = join_all(amis.iter().filter(|a| a.region != home).map(one))
                .await
                .into_iter();
            let mut results = Vec::with_capacity(amis.len());
            for target in amis {
                if target.region == home {
                    results.push(one(target).await);
                } else if let Some(result) = others.next() {
                    results.push(result);
                }
            }
            results
        }
    }
}

/// Writes each region's AMI to the parameter (skipping a region that already holds it), then
/// refreshes every configured group, unless every region found this build superseded. The
/// groups' launch templates are read while the regions are written; the groups are refreshed
/// side by side once every region is done.
pub(super) async fn publish_and_refresh(
    common: &Common,
    settings: &FleetSettings,
    amis: &[RegionalAmi],
    publish: &Publish<'_>,
    summary: &mut Summary,
) -> Result<(), PrepullError> {
    let home = common.config.pipeline.region();
    // Which launch template each group uses, and what that template says, depends on nothing
    // the publish writes, so it is read beside it. Only a template pinned to a label reads
    // the parameter, in `problems` below, once the label is on the AMI's version. The
    // refreshes' own reads stay after the publish: a refresh is judged by when it started
    // against when the parameter took the AMI (a twin invocation's refresh, started after
    // this publish, must be seen). On the rare paths that end before a refresh (a failed
    // publish, every region superseded) these reads are spent for nothing.
    let launch_reads = async {
        if settings.asg_names.is_empty() {
            return None;
        }
        Some(
            match autoscaling::launches(common.clients.autoscaling(), &settings.asg_names).await {
                Ok(launches) => Ok(read_templates(common, &launches).await),
                Err(error) => Err(error),
            },
        )
    };
    let (results, templates) = tokio::join!(
        publish_regions(common, settings, amis, publish),
        launch_reads
    );
    let published_at = take_results(home, amis, results, publish, summary)?;
    if summary
        .parameters
        .iter()
        .all(|p| p.action == ParameterAction::Superseded)
    {
        return Ok(());
    }
    let templates = match templates {
        None => return Ok(()),
        Some(Ok(templates)) => templates,
        Some(Err(error)) => {
            // Every group fails alike; a retryable cause makes Lambda retry the invocation.
            for group in &settings.asg_names {
                let outcome = failed(group, &error);
                metrics::count(Metric::RefreshesFailed, 1);
                summary.refreshes.push(outcome);
            }
            return Ok(());
        }
    };
    refresh_groups(
        common,
        settings,
        templates,
        amis,
        publish,
        published_at,
        summary,
    )
    .await;
    Ok(())
}

/// Takes every region's result into the summary, the home region's latency metric included,
/// before a failure is returned: the regions ran side by side, so one listed after a failed one
/// may have been written, and its retry finds it already current and measures nothing. Returns
/// when the home region's parameter took the AMI.
fn take_results(
    home: &str,
    amis: &[RegionalAmi],
    results: Vec<RegionResult>,
    publish: &Publish<'_>,
    summary: &mut Summary,
) -> Result<Option<DateTime<Utc>>, PrepullError> {
    let mut published_at = None;
    let mut first_error = None;
    for (target, result) in amis.iter().zip(results) {
        match result {
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
            Err(error) => {
                tracing::error!(region = %target.region, error = %error, "the parameter in this region was not written; the invocation fails");
                // The first in `amis`' order is returned; any other is in the log.
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(published_at),
    }
}

/// Refreshes every group whose launch template can take the AMI. Each group's refresh (is one
/// running, cancel it, start one) touches only that group, so the groups go side by side;
/// `join_all` keeps the configured order in the summary, and each group's outcome is counted
/// once, here.
async fn refresh_groups(
    common: &Common,
    settings: &FleetSettings,
    templates: TemplateReads,
    amis: &[RegionalAmi],
    publish: &Publish<'_>,
    published_at: Option<DateTime<Utc>>,
    summary: &mut Summary,
) {
    let home = common.config.pipeline.region();
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
    let groups = templates.problems(common, settings, check).await;
    let outcomes = join_all(groups.into_iter().map(|(group, launch)| async move {
        refresh_group(
            common,
            settings,
            &group,
            launch,
            published_at,
            publish.dry_run,
            publish.deadline,
        )
        .await
    }))
    .await;
    for outcome in outcomes {
        if let Some(metric) = prepull_core::metrics::for_refresh(outcome.outcome) {
            metrics::count(metric, 1);
        }
        summary.refreshes.push(outcome);
    }
}
