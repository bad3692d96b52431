//! build-finished: a finished build's AMIs go to the SSM parameter (in every distribution
//! region), the fleet is refreshed, and a change that arrived mid-build gets its follow-up
//! build. Operators use the same path to roll back or republish.
//!
//! - [`publish`]: the parameter in each region, then every group's refresh (regions and groups
//!   side by side where their order does not matter);
//! - [`refresh`]: one group's refresh, and a running one replaced or left;
//! - [`rollback`]: back to the previous AMI, from the parameter's history;
//! - [`follow_up`]: one more build when the component moved on during this one, checked beside
//!   the publish.

mod follow_up;
mod publish;
mod refresh;
mod rollback;

use std::time::Instant;

use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{BuildOutcome, BuildStatus, BuildSummary, newer_available};
use prepull_core::events::imagebuilder::StateChange;
use prepull_core::events::operator::{BuildFinishedRequest, read_build_finished_request};
use prepull_core::launch_template::Misconfiguration;
use prepull_core::parameter::{ParameterAction, RegionalAmi, Supersede, own_amis};
use prepull_core::refresh::RefreshResult;
use serde::Serialize;
use serde_json::Value;

pub use prepull_core::config::{FleetSettings, InProgress};
pub use prepull_core::parameter::build_label;

use crate::aws::imagebuilder::{ImageFacts, get_image, list_builds};
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::status::{self, StatusReport};
use publish::{OtherRegions, Publish, publish_and_refresh};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Published,
    AlreadyPublished,
    /// A newer build is AVAILABLE: this late event publishes nothing and refreshes nothing.
    Superseded,
    BuildFailed,
    Ignored,
    RolledBack,
    Republished,
}

/// What happened to the parameter in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterUpdate {
    pub region: String,
    pub ami: String,
    pub action: ParameterAction,
    pub version: Option<i64>,
    pub label: Option<String>,
    /// Why a `failed` region was not written.
    pub error: Option<String>,
    /// Something worth knowing about a region that was published: a label that could not be
    /// moved to the version holding the AMI.
    pub note: Option<String>,
}

/// What happened to one Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshOutcome {
    pub asg: String,
    pub outcome: RefreshResult,
    pub refresh_id: Option<String>,
    pub cancelled_refresh_id: Option<String>,
    pub error: Option<String>,
    /// Why a `misconfigured` group got no refresh: what its launch template says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub misconfigured: Vec<Misconfiguration>,
    #[serde(skip)]
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub dry_run: bool,
    pub image: Option<ImageBuilderArn>,
    pub reason: Option<String>,
    pub parameters: Vec<ParameterUpdate>,
    pub refreshes: Vec<RefreshOutcome>,
    /// `started <arn>`, `running <arn>`, `not-needed`, `already-attempted <arn> (<status>)` when
    /// the same follow-up was requested before and failed, or absent when not checked.
    pub follow_up: Option<BuildOutcome>,
    /// After a rollback: the regions the rolled-back build reached and the restored build did
    /// not. Their parameter keeps the rolled-back AMI (republish a build that reached them, or
    /// write them by hand).
    pub not_rolled_back: Vec<RegionalAmi>,
}

impl Summary {
    fn new(outcome: Outcome, dry_run: bool, image: Option<ImageBuilderArn>) -> Self {
        Self {
            outcome,
            dry_run,
            image,
            reason: None,
            parameters: Vec::new(),
            refreshes: Vec::new(),
            follow_up: None,
            not_rolled_back: Vec::new(),
        }
    }
}

/// What one invocation returns: a summary of what it did, or the status report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Summary(Box<Summary>),
    Status(Box<StatusReport>),
}

/// Handles one invocation, the status request included. `deadline` bounds the wait for a
/// cancelled refresh to end.
pub async fn invoke(
    common: &Common,
    settings: &FleetSettings,
    input: Value,
    deadline: Instant,
) -> Result<Response, PrepullError> {
    match read_build_finished_request(&input)? {
        BuildFinishedRequest::Status => Ok(Response::Status(Box::new(
            status::report(common, settings, common.clock.now()).await,
        ))),
        request => carry_out(common, settings, request, deadline)
            .await
            .map(|summary| Response::Summary(Box::new(summary))),
    }
}

/// Handles one event or operator request that acts (everything but the status report, which
/// [`invoke`] answers). `deadline` bounds the wait for a cancelled refresh to end.
pub async fn handle(
    common: &Common,
    settings: &FleetSettings,
    input: Value,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    carry_out(
        common,
        settings,
        read_build_finished_request(&input)?,
        deadline,
    )
    .await
}

async fn carry_out(
    common: &Common,
    settings: &FleetSettings,
    request: BuildFinishedRequest,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    match request {
        BuildFinishedRequest::Status => Err(PrepullError::InvalidInput(
            "{\"action\":\"status\"} returns a status report, not a summary: call build_finished::invoke".to_owned(),
        )),
        BuildFinishedRequest::StateChange(change) => {
            state_change(common, settings, change, deadline).await
        }
        BuildFinishedRequest::Republish { image_arn, dry_run } => {
            republish(common, settings, image_arn, dry_run, deadline).await
        }
        BuildFinishedRequest::Rollback { dry_run } => {
            rollback::rollback(common, settings, dry_run, deadline).await
        }
    }
}

fn require_amis(image_arn: &ImageBuilderArn, amis: &[RegionalAmi]) -> Result<(), PrepullError> {
    if amis.is_empty() {
        return Err(PrepullError::Unexpected {
            what: "GetImage",
            detail: format!("image {image_arn} is AVAILABLE but lists no AMI of this account"),
        });
    }
    Ok(())
}

fn built_here(common: &Common, image: &ImageFacts) -> bool {
    image.pipeline.as_deref() == Some(common.config.pipeline.as_str())
}

/// What a publish came to: `superseded` when every region found this build replaced by a
/// newer one, `already-published` when no region needed a write, else `published`.
fn published_outcome(parameters: &[ParameterUpdate]) -> Outcome {
    let actions: Vec<ParameterAction> = parameters.iter().map(|p| p.action).collect();
    prepull_core::parameter::publish_outcome(&actions).map_or(Outcome::Published, |o| match o {
        prepull_core::parameter::PublishOutcome::Superseded => Outcome::Superseded,
        prepull_core::parameter::PublishOutcome::AlreadyPublished => Outcome::AlreadyPublished,
    })
}

/// Fails the invocation, so Lambda retries it, only when something retryable failed.
fn finish(summary: Summary) -> Result<Summary, PrepullError> {
    if let Some(failed) = summary.refreshes.iter().find(|r| r.retryable) {
        return Err(PrepullError::RefreshFailed {
            group: failed.asg.clone(),
            message: failed.error.clone().unwrap_or_default(),
        });
    }
    Ok(summary)
}

async fn republish(
    common: &Common,
    settings: &FleetSettings,
    image_arn: ImageBuilderArn,
    dry_run: bool,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    if let Some(reason) = common.config.pipeline.foreign(&image_arn) {
        return Err(PrepullError::InvalidInput(format!(
            "cannot republish: {reason}; prepull publishes only its own pipeline's images"
        )));
    }
    let image = get_image(common.clients.imagebuilder(), &image_arn).await?;
    if image.status != BuildStatus::Available {
        return Err(PrepullError::InvalidInput(format!(
            "image {image_arn} is {}, not AVAILABLE: there is nothing to republish",
            image.status
        )));
    }
    if !built_here(common, &image) {
        return Err(PrepullError::InvalidInput(format!(
            "image {image_arn} was not built by {}: prepull publishes only its own pipeline's images",
            common.config.pipeline
        )));
    }
    let amis = own_amis(&image.amis, common.config.pipeline.account());
    require_amis(&image_arn, &amis)?;
    let label = build_label(image_arn.as_str());
    let mut summary = Summary::new(Outcome::Republished, dry_run, Some(image_arn));
    let publish = Publish {
        label: Some(&label),
        supersede: Supersede::Publish,
        other_regions: OtherRegions::FailTheRun,
        dry_run,
        deadline,
        latency_from: image.oldest_new_push,
        ami_root_gib: image.root_volume_gib,
    };
    publish_and_refresh(common, settings, &amis, &publish, &mut summary).await?;
    finish(summary)
}

async fn state_change(
    common: &Common,
    settings: &FleetSettings,
    change: StateChange,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    let StateChange {
        image_arn,
        status,
        reason,
    } = change;
    // An event about another account's, region's or partition's image costs no AWS call and
    // is no error: nothing is retried or sent to a dead-letter queue.
    if let Some(reason) = common.config.pipeline.foreign(&image_arn) {
        tracing::info!(image = %image_arn, reason = %reason, "not this pipeline's home; ignored");
        return Ok(ignored(image_arn, reason));
    }
    if !status.is_finished() {
        tracing::info!(image = %image_arn, status = %status, "not a terminal state; ignored");
        return Ok(ignored(
            image_arn,
            format!("status {status} is not terminal"),
        ));
    }
    // "Is a newer build out" reads the pipeline's builds, not the image: for an AVAILABLE
    // build both are asked at once. For another pipeline's image the list is one read spent
    // for nothing, and its answer (an error included) is dropped unread.
    let (image, builds) = if status == BuildStatus::Available {
        let (image, builds) = tokio::join!(
            get_image(common.clients.imagebuilder(), &image_arn),
            list_builds(
                common.clients.imagebuilder(),
                common.config.pipeline.as_str()
            ),
        );
        (image, Some(builds))
    } else {
        (
            get_image(common.clients.imagebuilder(), &image_arn).await,
            None,
        )
    };
    let image = image?;
    if !built_here(common, &image) {
        tracing::info!(image = %image_arn, pipeline = image.pipeline.as_deref(), "an image of another pipeline; ignored");
        let why = format!(
            "built by {}, not by {}",
            image.pipeline.as_deref().unwrap_or("no pipeline"),
            common.config.pipeline
        );
        return Ok(ignored(image_arn, why));
    }
    if let Some(metric) = prepull_core::metrics::for_finished_build(status) {
        crate::metrics::count(metric, 1);
    }
    let finished = Finished {
        image_arn,
        status,
        reason,
        image: &image,
    };
    // The follow-up reads the cache component and the pipeline's builds and may start the
    // next build. It touches neither the parameter published here (the parent image it may
    // read is the recipe's, which that parameter was first filled from) nor a group, so it
    // runs beside the publish and the refreshes. Both run to the end. A failure of either still fails
    // the invocation, so Lambda retries it: the retry's publish and refreshes find what is
    // done (each region decides from what it holds, each group from its refreshes), and its
    // follow-up finds the build this one started (running, or the same build again through
    // its idempotent client token). When both fail, the publish's error is the one returned.
    let (outcome, follow_up) = tokio::join!(
        finished.carry_out(common, settings, builds, deadline),
        follow_up::follow_up(common, image.manifest_hash.as_deref())
    );
    let summary = match (outcome, follow_up) {
        (Ok(mut summary), Ok(follow_up)) => {
            summary.follow_up = Some(follow_up);
            summary
        }
        (Err(error), follow_up) => {
            if let Err(follow_up_error) = follow_up {
                tracing::error!(error = %follow_up_error, "the follow-up failed too; the retry checks it again");
            }
            return Err(error);
        }
        (Ok(_), Err(error)) => return Err(error),
    };
    finish(summary)
}

fn ignored(image_arn: ImageBuilderArn, reason: String) -> Summary {
    let mut summary = Summary::new(Outcome::Ignored, false, Some(image_arn));
    summary.reason = Some(reason);
    summary
}

/// A build of this pipeline that ended, and its image.
struct Finished<'a> {
    image_arn: ImageBuilderArn,
    status: BuildStatus,
    reason: Option<String>,
    image: &'a ImageFacts,
}

impl Finished<'_> {
    /// Publishes and refreshes an AVAILABLE build unless a newer one is out (`builds`, listed
    /// beside GetImage), or reports a build that produced no image.
    async fn carry_out(
        self,
        common: &Common,
        settings: &FleetSettings,
        builds: Option<Result<Vec<BuildSummary>, PrepullError>>,
        deadline: Instant,
    ) -> Result<Summary, PrepullError> {
        let Finished {
            image_arn,
            status,
            reason,
            image,
        } = self;
        let newer = match builds {
            Some(builds) => newer_available(&image_arn, &builds?).map(|b| b.arn.clone()),
            None => None,
        };
        if let Some(newer) = newer {
            tracing::warn!(image = %image_arn, newer = %newer, "a newer build is AVAILABLE; this late event publishes nothing");
            let mut summary = Summary::new(Outcome::Superseded, false, Some(image_arn));
            summary.reason = Some(format!("{newer} is newer and AVAILABLE"));
            return Ok(summary);
        }
        if status != BuildStatus::Available {
            let why = reason
                .or_else(|| image.reason.clone())
                .unwrap_or_else(|| "no reason given".to_owned());
            tracing::error!(image = %image_arn, status = %status, reason = %why, "the build did not produce an image; nothing published");
            let mut summary = Summary::new(Outcome::BuildFailed, false, Some(image_arn));
            summary.reason = Some(format!("{status}: {why}"));
            return Ok(summary);
        }
        let amis = own_amis(&image.amis, common.config.pipeline.account());
        require_amis(&image_arn, &amis)?;
        let label = build_label(image_arn.as_str());
        let mut summary = Summary::new(Outcome::Published, false, Some(image_arn));
        let publish = Publish {
            label: Some(&label),
            supersede: Supersede::Skip,
            other_regions: OtherRegions::FailTheRun,
            dry_run: false,
            deadline,
            latency_from: image.oldest_new_push,
            ami_root_gib: image.root_volume_gib,
        };
        publish_and_refresh(common, settings, &amis, &publish, &mut summary).await?;
        summary.outcome = published_outcome(&summary.parameters);
        Ok(summary)
    }
}
