//! One more build when the cache component moved on during the build that ended.

use prepull_core::build::{BuildToken, FollowUp, FollowUpPlan, build_request, decide_follow_up};

use prepull_core::image::{Digest, ImageRef};

use crate::aws::{ecr, imagebuilder};
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::reconcile::{
    NOTHING_TO_CACHE, Visibility, latency_tag, start_build, visible_with_parent,
};

/// Reads the component and the pipeline's builds, and starts the follow-up if one is due.
pub(super) async fn follow_up(
    common: &Common,
    built_manifest: Option<&str>,
) -> Result<FollowUp, PrepullError> {
    let client = common.clients.imagebuilder();
    let pipeline = common.config.pipeline.as_str();
    let state = imagebuilder::read_component_state(client, &common.config.component_name).await?;
    let latest = state.latest_manifest.hash();
    // Nothing more to read when the build carried the latest manifest.
    if built_manifest == Some(latest.as_str()) {
        return Ok(FollowUp::NotNeeded);
    }
    let builds = imagebuilder::list_builds(client, pipeline).await?;
    let version = state
        .latest_version
        .map(|v| v.to_string())
        .unwrap_or_default();
    match decide_follow_up(built_manifest, &latest, &builds, &version) {
        FollowUpPlan::Done(follow_up) => Ok(follow_up),
        FollowUpPlan::Start { .. } if state.latest_manifest.is_empty() => {
            Ok(FollowUp::Withheld(NOTHING_TO_CACHE.to_owned()))
        }
        FollowUpPlan::Start { token_prefix, tags } => {
            // Its pins were confirmed when their version was written, a build's length ago.
            let pins: Vec<(ImageRef, Digest)> = state
                .latest_manifest
                .images()
                .map(|pin| (pin.image, pin.digest))
                .collect();
            let ecr_state = ecr::read(&common.clients, &[], &pins).await?;
            let gone: Vec<&ImageRef> = pins
                .iter()
                .filter(|(image, digest)| ecr_state.lacks_digest(image, digest))
                .map(|(image, _)| image)
                .collect();
            if !gone.is_empty() {
                let gone: Vec<String> = gone.iter().map(ToString::to_string).collect();
                tracing::warn!(images = ?gone, "the follow-up would pin digests ECR no longer has; not started");
                return Ok(FollowUp::Withheld(format!(
                    "ECR no longer has the pinned digest of {}; the next reconcile drops them and builds",
                    gone.join(", ")
                )));
            }
            let view = imagebuilder::read_pipeline(client, pipeline).await?;
            let (visible, latency) = tokio::join!(
                visible_with_parent(common, &view, state.latest_build_arn.as_ref(), &latest),
                latency_tag(common, &state.latest_manifest, &builds),
            );
            let (visibility, parent) = visible?;
            if let Visibility::Superseded(newer) = visibility {
                tracing::info!(newer = %newer, "a newer component version appeared; its writer builds it");
                return Ok(FollowUp::NotNeeded);
            }
            let tags = tags.into_iter().chain(latency).collect();
            let (token, tags) =
                build_request(BuildToken::Derived(token_prefix), tags, parent.as_deref());
            Ok(start_build(common, &token, &tags, &builds).await?.into())
        }
    }
}
