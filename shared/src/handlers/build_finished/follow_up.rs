//! One more build when the cache component moved on during the build that ended.

use prepull_core::build::{BuildDecision, BuildOutcome, decide_follow_up};
use prepull_core::image::{Digest, ImageRef};

use crate::aws::{ecr, imagebuilder};
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::reconcile::NOTHING_TO_CACHE;
use crate::handlers::start::{Written, start_due};

/// Reads the component and the pipeline's builds, and starts the follow-up if one is due.
pub(super) async fn follow_up(
    common: &Common,
    built_manifest: Option<&str>,
) -> Result<BuildOutcome, PrepullError> {
    let client = common.clients.imagebuilder();
    let pipeline = common.config.pipeline.as_str();
    let state = imagebuilder::read_component_state(client, &common.config.component_name).await?;
    let latest = state.latest_manifest.hash();
    // Nothing more to read when the build carried the latest manifest.
    if built_manifest == Some(latest.as_str()) {
        return Ok(BuildOutcome::NotNeeded);
    }
    let builds = imagebuilder::list_builds(client, pipeline).await?;
    let version = state
        .latest_version
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let due = match decide_follow_up(built_manifest, &latest, &builds, &version) {
        BuildDecision::Settled(outcome) => return Ok(outcome),
        BuildDecision::Start(_) if state.latest_manifest.is_empty() => {
            return Ok(BuildOutcome::Withheld(NOTHING_TO_CACHE.to_owned()));
        }
        BuildDecision::Start(due) => due,
    };
    // Its pins were confirmed when their version was written, a build's length ago: confirm
    // them again (one read per repository) while the pipeline is read.
    let pins: Vec<(ImageRef, Digest)> = state
        .latest_manifest
        .images()
        .map(|pin| (pin.image, pin.digest))
        .collect();
    let (ecr_state, view) = tokio::join!(
        ecr::read(&common.clients, &[], &pins),
        imagebuilder::read_pipeline(client, pipeline),
    );
    let (ecr_state, view) = (ecr_state?, view?);
    let gone: Vec<String> = pins
        .iter()
        .filter(|(image, digest)| ecr_state.lacks_digest(image, digest))
        .map(|(image, _)| image.to_string())
        .collect();
    if !gone.is_empty() {
        tracing::warn!(images = ?gone, "the follow-up would pin digests ECR no longer has; not started");
        return Ok(BuildOutcome::Withheld(format!(
            "ECR no longer has the pinned digest of {}; the next reconcile drops them and builds",
            gone.join(", ")
        )));
    }
    let written = state.latest_build_arn.as_ref().map(|build| Written {
        build,
        manifest_hash: &latest,
    });
    match start_due(common, &view, &builds, written, &state.latest_manifest, due).await? {
        // A newer component version appeared; its writer builds it.
        BuildOutcome::Superseded(_) => Ok(BuildOutcome::NotNeeded),
        outcome => Ok(outcome),
    }
}
