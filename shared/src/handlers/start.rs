//! The one start path: a build the three triggers (image-pushed, patch-day, build-finished's
//! follow-up) decided is due, taken to started, already attempted, yielded or superseded.
//!
//! On the way it waits for the recipe's wildcard to resolve to the version just written
//! (Image Builder resolves `x.x.x` when the build starts, and is eventually consistent), reads
//! the parent image and the push-to-AMI latency tag beside that wait, and after the start
//! reads the listing again so that of two builds started at once the later yields.

use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{
    BuildOutcome, BuildRequest, BuildSummary, DueBuild, OLDEST_NEW_PUSH_TAG, newest_available,
    started_build, unlisted_predecessors, yields_to,
};
use prepull_core::component::{self, Resolution};
use prepull_core::manifest::Manifest;

use crate::aws::imagebuilder::{self, PipelineView};
use crate::aws::ssm;
use crate::common::Common;
use crate::error::PrepullError;
use crate::metrics;
use prepull_core::metrics::Metric;

/// The component build a run wrote, and the hash of the manifest its document carries: a start
/// waits until the recipe resolves to it.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    pub build: &'a ImageBuilderArn,
    pub manifest_hash: &'a str,
}

/// Takes a due build to an outcome: the parent image and the latency tag are read while the
/// recipe catches up with `written`, then the request is sent. `builds` is the pipeline's
/// listing the decision was made from.
pub async fn start_due(
    common: &Common,
    view: &PipelineView,
    builds: &[BuildSummary],
    written: Option<Written<'_>>,
    manifest: &Manifest,
    due: DueBuild,
) -> Result<BuildOutcome, PrepullError> {
    let visible = async {
        match written {
            Some(written) => await_component_visible(common, view, written).await,
            None => Ok(Visibility::Written),
        }
    };
    let (visibility, parent, latency) = tokio::join!(
        visible,
        current_parent_image(common, view),
        latency_tag(common, manifest, builds),
    );
    if let Visibility::Superseded(newer) = visibility? {
        return Ok(superseded(newer));
    }
    send(common, &due.request(latency, parent?.as_deref()), builds).await
}

/// Sends a request decided in full beforehand (patch-day's, which its dry run prints), once the
/// recipe resolves to `written`.
pub async fn start_planned(
    common: &Common,
    view: &PipelineView,
    builds: &[BuildSummary],
    written: Option<Written<'_>>,
    request: &BuildRequest,
) -> Result<BuildOutcome, PrepullError> {
    if let Some(written) = written
        && let Visibility::Superseded(newer) =
            await_component_visible(common, view, written).await?
    {
        return Ok(superseded(newer));
    }
    send(common, request, builds).await
}

fn superseded(newer: ImageBuilderArn) -> BuildOutcome {
    tracing::info!(newer = %newer, "a concurrent writer's newer component version carries this change; its invocation builds it");
    BuildOutcome::Superseded(newer)
}

/// The `prepull:oldest-new-push` tag for a build of `manifest`: the oldest push among its
/// images that the newest AVAILABLE build's manifest lacks (see
/// [`prepull_core::metrics::oldest_new_push`]). build-finished measures the push-to-AMI latency
/// from it when it publishes the AMI. Only a metric depends on it, so a failed read of the
/// earlier manifest is logged and the build goes ahead without the tag.
pub(crate) async fn latency_tag(
    common: &Common,
    manifest: &Manifest,
    builds: &[BuildSummary],
) -> Option<(String, String)> {
    let previous = match newest_available(builds) {
        None => None,
        Some((_, build)) => match published_manifest(common, build).await {
            Ok(Some(previous)) => Some(previous),
            Ok(None) => {
                tracing::warn!(image = %build.arn, "the last AVAILABLE image's manifest is not found; the build carries no push-to-AMI latency tag");
                return None;
            }
            Err(error) => {
                tracing::warn!(image = %build.arn, error = %error, "the last AVAILABLE image's manifest could not be read; the build carries no push-to-AMI latency tag");
                return None;
            }
        },
    };
    prepull_core::metrics::oldest_new_push(manifest, previous.as_ref()).map(|at| {
        (
            OLDEST_NEW_PUSH_TAG.to_owned(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    })
}

/// The manifest an image was built from: its component version's build with the image's
/// manifest hash.
async fn published_manifest(
    common: &Common,
    build: &BuildSummary,
) -> Result<Option<Manifest>, PrepullError> {
    let (Some(version), Some(hash)) = (&build.component_version, &build.manifest_hash) else {
        return Ok(None);
    };
    let pipeline = &common.config.pipeline;
    let version_arn = ImageBuilderArn::parse(&format!(
        "arn:{}:imagebuilder:{}:{}:component/{}/{version}",
        pipeline.partition(),
        pipeline.region(),
        pipeline.account(),
        common.config.component_name.to_lowercase()
    ))
    .map_err(|e| PrepullError::Unexpected {
        what: "the prepull:component-version tag",
        detail: e.to_string(),
    })?;
    imagebuilder::manifest_of_version(common.clients.imagebuilder(), &version_arn, hash).await
}

/// What the recipe's wildcard resolves to, as far as a start is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Visibility {
    /// The build this run wrote (or the recipe pins builds): a build may start.
    Written,
    /// A newer writer's build: that writer builds it; this run starts nothing.
    Superseded(ImageBuilderArn),
}

/// How long a start waits for the recipe's wildcard to resolve to the version just written.
/// With [`LISTING_WAIT`] it stays well inside image-pushed's 60-second timeout; past it the
/// invocation fails and SQS delivers the batch again.
const VISIBILITY_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How often it looks meanwhile.
const VISIBILITY_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits, before a build starts, until the recipe's wildcard reference to the cache component
/// resolves to `written` (or later): Image Builder resolves `x.x.x` when the build starts, and
/// is eventually consistent, so a build started right after CreateComponent could take the
/// previous version and be labelled with a manifest it did not cache. A recipe that pins the
/// build needs no wait.
async fn await_component_visible(
    common: &Common,
    view: &PipelineView,
    written: Written<'_>,
) -> Result<Visibility, PrepullError> {
    let Written {
        build: written,
        manifest_hash: written_manifest,
    } = written;
    let arns: Vec<&str> = view
        .recipe
        .components()
        .iter()
        .map(aws_sdk_imagebuilder::types::ComponentConfiguration::component_arn)
        .collect();
    let reference =
        match prepull_core::recipe::recipe_reference(&arns, &common.config.component_name) {
            Some(prepull_core::recipe::RecipeReference::Wildcard) => arns
                .iter()
                .find(|arn| {
                    ImageBuilderArn::parse(arn)
                        .is_ok_and(|a| a.name() == common.config.component_name.to_lowercase())
                })
                .copied()
                .unwrap_or_default(),
            _ => return Ok(Visibility::Written),
        };
    let until = std::time::Instant::now() + VISIBILITY_WAIT;
    loop {
        let resolved =
            imagebuilder::resolve_component(common.clients.imagebuilder(), reference).await?;
        let seen = component::resolution(
            resolved
                .as_ref()
                .map(|(arn, manifest)| (arn, manifest.as_str())),
            (written, written_manifest),
        );
        match (seen, &resolved) {
            (Resolution::Written, _) => return Ok(Visibility::Written),
            // Another writer's build of this version or a later one, with another manifest:
            // it took this version too (and merges this run's pushes into the next) or came
            // after. That writer's invocation builds what it wrote; this one must not label it
            // with its own manifest.
            (Resolution::Newer, Some((newer, _))) => {
                return Ok(Visibility::Superseded(newer.clone()));
            }
            _ => {}
        }
        let resolved = resolved.map_or_else(|| "nothing".to_owned(), |(r, _)| r.to_string());
        if std::time::Instant::now() + VISIBILITY_POLL > until {
            return Err(PrepullError::ComponentNotVisible {
                reference: reference.to_owned(),
                resolved,
                written: written.to_string(),
            });
        }
        tracing::info!(reference, resolved = %resolved, written = %written, "waiting for the new component version to become visible");
        tokio::time::sleep(VISIBILITY_POLL).await;
    }
}

/// How long a start waits for the builds numbered before it to appear in the listing.
const LISTING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The pipeline's builds, read again after starting `ours`, once every build numbered before it
/// is listed (see [`unlisted_predecessors`]), or after [`LISTING_WAIT`]: a build of the same
/// recipe version by another pipeline never appears in this one's listing.
async fn builds_started_before(
    common: &Common,
    ours: &ImageBuilderArn,
) -> Result<Vec<BuildSummary>, PrepullError> {
    let until = std::time::Instant::now() + LISTING_WAIT;
    loop {
        let listed = imagebuilder::list_builds(
            common.clients.imagebuilder(),
            common.config.pipeline.as_str(),
        )
        .await?;
        let missing = unlisted_predecessors(ours, &listed);
        if missing.is_empty() || std::time::Instant::now() + VISIBILITY_POLL > until {
            return Ok(listed);
        }
        tracing::info!(image = %ours, missing = ?missing, "builds started just before this one are not listed yet");
        tokio::time::sleep(VISIBILITY_POLL).await;
    }
}

/// The recipe's parent image as it resolves now (see [`ssm::parent_image_value`]).
pub async fn current_parent_image(
    common: &Common,
    view: &PipelineView,
) -> Result<Option<String>, PrepullError> {
    ssm::parent_image_value(common.clients.ssm(), view.recipe.parent_image()).await
}

/// Starts the pipeline with `request`. `listed` is the pipeline's builds as listed before the
/// call: a returned ARN among them is an earlier request's build.
async fn send(
    common: &Common,
    request: &BuildRequest,
    listed: &[BuildSummary],
) -> Result<BuildOutcome, PrepullError> {
    let arn = imagebuilder::start_build(
        common.clients.imagebuilder(),
        common.config.pipeline.as_str(),
        &request.client_token,
        &request.tags,
    )
    .await?;
    let mut outcome = started_build(arn, listed);
    if let BuildOutcome::Started(arn) = &outcome {
        let now = builds_started_before(common, arn).await?;
        if let Some(first) = yields_to(arn, &now) {
            imagebuilder::cancel_build(common.clients.imagebuilder(), arn).await?;
            tracing::warn!(
                cancelled = %arn,
                running = %first.arn,
                "another invocation started a build first; this one was cancelled and the change \
                 waits for that build's follow-up"
            );
            outcome = BuildOutcome::Queued {
                running: first.arn.clone(),
                same_manifest: false,
            };
        }
    }
    match &outcome {
        BuildOutcome::Started(arn) => {
            metrics::count(Metric::BuildsStarted, 1);
            tracing::info!(image = %arn, "pipeline build started");
        }
        BuildOutcome::AlreadyAttempted { arn, status } => {
            metrics::count(Metric::BuildsAlreadyAttempted, 1);
            tracing::warn!(
                image = %arn,
                status = %status,
                token = %request.client_token,
                "the same build request was made before and that build ended without an image; \
                 Image Builder started nothing new (a changed manifest, the next day's schedule \
                 or a forced run starts one)"
            );
        }
        _ => metrics::count(Metric::BuildsQueued, 1),
    }
    Ok(outcome)
}
