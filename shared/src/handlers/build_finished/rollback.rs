//! An operator's rollback: the parameter goes back to the AMI it held before, in every region
//! the build behind that AMI was distributed to, and the fleet is refreshed onto it.

use std::time::Instant;

use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::BuildSummary;
use prepull_core::config::FleetSettings;
use prepull_core::parameter::{
    RegionalAmi, RollbackChoice, Supersede, build_label, build_labels_of, choose_rollback,
    home_last, left_behind, own_amis, rolled_back_from,
};

use super::publish::{OtherRegions, Publish, publish_and_refresh};
use super::{Outcome, Summary, finish};
use crate::aws::{imagebuilder, ssm};
use crate::common::Common;
use crate::error::PrepullError;

/// Rolls back, or finishes a rollback that stopped part way (see [`choose_rollback`]).
pub(super) async fn rollback(
    common: &Common,
    settings: &FleetSettings,
    dry_run: bool,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    let home = common.config.pipeline.region();
    let client = common.clients.ssm_in(home);
    let history = ssm::read_history(&client, &settings.parameter).await?;
    let choice = choose_rollback(&settings.parameter, &history)
        .map_err(|refused| PrepullError::InvalidInput(refused.to_string()))?;
    let from = rolled_back_from(&history, &choice);
    let (target, label, reason) = match choice {
        RollbackChoice::Finish {
            label,
            version,
            value,
        } => {
            let reason = format!("already rolled back: version {version} ({label}) holds {value}");
            (value, label, reason)
        }
        RollbackChoice::Back {
            current,
            previous,
            label,
            ..
        } => {
            let reason = format!("from {current} back to {previous}");
            (previous, label, reason)
        }
    };
    let mut builds = None;
    let (image, amis) = rollback_targets(
        common,
        home,
        &target,
        &build_labels_of(&history, &target),
        &mut builds,
    )
    .await?;
    // The regions the rolled-back build reached and the restored one did not keep its AMI.
    let not_rolled_back = match &from {
        Some(from) => {
            match build_behind(common, &build_labels_of(&history, from), &mut builds).await? {
                Some((_, bad)) => left_behind(&bad, &amis),
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    if !not_rolled_back.is_empty() {
        tracing::warn!(regions = ?not_rolled_back, "the rolled-back build reached regions the restored one did not; their parameter keeps the rolled-back AMI");
    }
    let mut summary = Summary::new(Outcome::RolledBack, dry_run, image);
    summary.reason = Some(reason);
    summary.not_rolled_back = not_rolled_back;
    let publish = Publish {
        label: Some(&label),
        supersede: Supersede::Publish,
        other_regions: OtherRegions::RecordFailures,
        dry_run,
        deadline,
        latency_from: None,
        // The restored build's recipe is not read again: its launch template was checked
        // against it when it was published.
        ami_root_gib: None,
    };
    publish_and_refresh(common, settings, &amis, &publish, &mut summary).await?;
    finish(summary)
}

/// Where a rollback writes: the build that published `previous` in the home region, found by
/// a build label on a version that held it, goes back in every region it was distributed to.
/// Without such a build (the value came from elsewhere, or the image is gone) only the home
/// region goes back.
async fn rollback_targets(
    common: &Common,
    home: &str,
    previous: &str,
    build_labels: &[String],
    builds: &mut Option<Vec<BuildSummary>>,
) -> Result<(Option<ImageBuilderArn>, Vec<RegionalAmi>), PrepullError> {
    let home_only = vec![RegionalAmi::new(home, previous)];
    let Some((arn, amis)) = build_behind(common, build_labels, builds).await? else {
        if !build_labels.is_empty() {
            tracing::warn!(labels = ?build_labels, "the build behind the previous AMI is gone; rolling back the home region only");
        }
        return Ok((None, home_only));
    };
    match home_last(home, previous, amis) {
        Some(amis) => Ok((Some(arn), amis)),
        None => Ok((None, home_only)),
    }
}

/// The build one of `build_labels` names, and its AMIs in this account; the pipeline's builds
/// are listed once, on first need.
async fn build_behind(
    common: &Common,
    build_labels: &[String],
    builds: &mut Option<Vec<BuildSummary>>,
) -> Result<Option<(ImageBuilderArn, Vec<RegionalAmi>)>, PrepullError> {
    if build_labels.is_empty() {
        return Ok(None);
    }
    let client = common.clients.imagebuilder();
    if builds.is_none() {
        *builds = Some(imagebuilder::list_builds(client, common.config.pipeline.as_str()).await?);
    }
    let listed = builds.as_deref().unwrap_or_default();
    let Some(build) = build_labels.iter().find_map(|label| {
        listed
            .iter()
            .find(|b| b.status.has_amis() && build_label(b.arn.as_str()) == *label)
    }) else {
        return Ok(None);
    };
    let image = imagebuilder::get_image(client, &build.arn).await?;
    Ok(Some((
        build.arn.clone(),
        own_amis(&image.amis, common.config.pipeline.account()),
    )))
}
