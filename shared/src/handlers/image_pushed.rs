//! ECR pushes → a new cache component version → one pipeline build.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{
    BuildDecision, BuildStatus, BuildToken, StartedBuild, build_request, decide_build,
};
use prepull_core::events::ecr::{Push, Record, read_input, untie};
use serde::Serialize;
use serde_json::Value;

use crate::aws::imagebuilder;
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::reconcile::{
    NOTHING_TO_CACHE, Resolve, Visibility, latency_tag, reconcile_and_plan, start_build,
    visible_with_parent,
};
use crate::metrics;
use prepull_core::image::ImageRef;
use prepull_core::metrics::Metric;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    BuildStarted,
    /// The same build was requested before and ended without an image; Image Builder
    /// returned that build and started nothing (see [`StartedBuild::Earlier`]).
    AlreadyAttempted,
    UpToDate,
    QueuedBehindRunningBuild,
    /// A concurrent writer's newer component version carries this run's change (it merges
    /// what this run wrote); that writer's invocation builds it.
    Superseded,
    Ignored,
    Rejected,
    /// No watched image is in ECR: the cache would be empty, so nothing is built.
    NothingToCache,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordNote {
    pub message_id: Option<String>,
    pub reason: String,
}

/// What the function did, returned as its JSON result. `batchItemFailures` sends rejected
/// records to the dead-letter queue; everything else in the batch is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub component_version: Option<String>,
    pub component_build_version_arn: Option<ImageBuilderArn>,
    pub image_build_version_arn: Option<ImageBuilderArn>,
    /// With `already-attempted`: how that earlier build ended.
    pub earlier_build_status: Option<BuildStatus>,
    pub recipe_arn: Option<String>,
    /// With `superseded`: the newer component build that carries this run's change.
    pub superseded_by: Option<ImageBuilderArn>,
    pub manifest_hash: Option<String>,
    /// The cached images after this run, as `image@digest`.
    pub images: Vec<String>,
    /// Pushes that moved a digest.
    pub applied: Vec<String>,
    /// Watched images ECR does not have, that the cache never held.
    pub unresolved: Vec<String>,
    /// Images the cache pinned that ECR no longer has (deleted, by a person or a lifecycle
    /// policy), as `image@digest`: they left the manifest.
    pub removed: Vec<String>,
    /// Why nothing was built, with `nothing-to-cache`.
    pub reason: Option<String>,
    pub ignored: Vec<RecordNote>,
    pub rejected: Vec<RecordNote>,
    /// The records SQS keeps for a retry and, after the queue's `maxReceiveCount`, moves to
    /// the dead-letter queue (`SqsBatchResponse`'s list, flat in the summary).
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// Handles one invocation: an SQS batch of ECR events, or one ECR event invoked directly.
///
/// Rejected records never reach AWS. A transient AWS failure returns an error, so the whole
/// batch is retried; the retry finds what is already done and does only the rest.
pub async fn handle(common: &Common, input: Value) -> Result<Summary, PrepullError> {
    let config = &common.config;
    let records = read_input(&input, &config.images)
        .map_err(|e| PrepullError::InvalidInput(e.to_string()))?;
    let mut pushes: Vec<Push> = Vec::new();
    let mut deleted: Vec<ImageRef> = Vec::new();
    let mut failures = SqsBatchResponse::default();
    let mut summary = Summary {
        outcome: Outcome::Ignored,
        component_version: None,
        component_build_version_arn: None,
        image_build_version_arn: None,
        earlier_build_status: None,
        recipe_arn: None,
        superseded_by: None,
        manifest_hash: None,
        images: Vec::new(),
        applied: Vec::new(),
        unresolved: Vec::new(),
        removed: Vec::new(),
        reason: None,
        ignored: Vec::new(),
        rejected: Vec::new(),
        batch_item_failures: Vec::new(),
    };
    for input_record in records {
        let message_id = input_record.message_id;
        match input_record.record {
            Record::Push(push) => pushes.push(push),
            Record::Deleted(deletion) => {
                tracing::info!(message_id = message_id.as_deref(), digest = %deletion.digest, images = ?deletion.images.iter().map(ToString::to_string).collect::<Vec<_>>(), "a deletion in a watched repository: ECR decides what stays");
                for image in deletion.images {
                    if !deleted.contains(&image) {
                        deleted.push(image);
                    }
                }
            }
            Record::Ignored(reason) => {
                tracing::info!(message_id = message_id.as_deref(), reason = %reason, "record ignored");
                summary.ignored.push(RecordNote {
                    message_id,
                    reason: reason.to_string(),
                });
            }
            Record::Rejected(reason) => {
                tracing::error!(message_id = message_id.as_deref(), reason = %reason, "record rejected");
                match &message_id {
                    Some(id) => failures.add_failure(id.clone()),
                    None => return Err(PrepullError::InvalidInput(reason.to_string())),
                }
                summary.rejected.push(RecordNote {
                    message_id,
                    reason: reason.to_string(),
                });
            }
        }
    }
    summary.batch_item_failures = failures.batch_item_failures;
    metrics::count(
        Metric::PushesSeen,
        (pushes.len() + summary.ignored.len() + summary.rejected.len()) as u64,
    );
    metrics::count(Metric::PushesIgnored, summary.ignored.len() as u64);
    metrics::count(Metric::PushesRejected, summary.rejected.len() as u64);
    if pushes.is_empty() && deleted.is_empty() {
        summary.outcome = if summary.rejected.is_empty() {
            Outcome::Ignored
        } else {
            Outcome::Rejected
        };
        return Ok(summary);
    }

    let trigger = describe_trigger(&pushes, &deleted);
    let (pushes, tied) = untie(&pushes);
    if !tied.is_empty() {
        tracing::info!(images = ?tied.iter().map(ToString::to_string).collect::<Vec<_>>(), "pushes of one tag in one second: ECR's current digest decides");
    }
    // ECR decides the images a push cannot (ties), the tags a deletion may have taken away,
    // and, before a build, any pin whose digest ECR no longer has.
    let mut ask_ecr = tied;
    for image in deleted {
        if !ask_ecr.contains(&image) {
            ask_ecr.push(image);
        }
    }
    let (component, view, recipe_change) = reconcile_and_plan(
        common,
        &pushes,
        Resolve::Missing(ask_ecr),
        &trigger,
        false,
        common.clock.now(),
    )
    .await?;
    summary.unresolved = component.unresolved.clone();
    summary.removed = component.removed.clone();
    summary.applied = component.applied.clone();
    summary.images = component.images.clone();
    summary.manifest_hash = Some(component.manifest_hash.clone());
    summary.component_version = component.version.clone();
    summary.component_build_version_arn = component.build_arn.clone();

    if let (Some(change), Some(build_arn)) = (&recipe_change, &component.build_arn) {
        let client = common.clients.imagebuilder();
        summary.recipe_arn = Some(
            imagebuilder::apply_recipe_change(
                client,
                &view,
                change,
                build_arn,
                &component.manifest_hash,
            )
            .await?,
        );
    }
    if component.manifest.is_empty() {
        tracing::warn!("no watched image is in ECR: the cache would be empty; no build");
        summary.outcome = Outcome::NothingToCache;
        summary.reason = Some(NOTHING_TO_CACHE.to_owned());
        return Ok(summary);
    }

    let builds =
        imagebuilder::list_builds(common.clients.imagebuilder(), config.pipeline.as_str()).await?;
    let version = component.version.clone().unwrap_or_default();
    summary.outcome = match decide_build(&builds, &component.manifest_hash, &version, "ecr-push") {
        BuildDecision::Start { token_prefix, tags } => {
            // Two independent reads: whether the recipe sees the new version (with the
            // parent image), and the latency tag.
            let (visible, latency) = tokio::join!(
                visible_with_parent(
                    common,
                    &view,
                    component.build_arn.as_ref(),
                    &component.manifest_hash,
                ),
                latency_tag(common, &component.manifest, &builds),
            );
            let (visibility, parent) = visible?;
            if let Visibility::Superseded(newer) = visibility {
                tracing::info!(newer = %newer, "a concurrent writer's newer component version carries this change; its invocation builds it");
                summary.outcome = Outcome::Superseded;
                summary.superseded_by = Some(newer);
                return Ok(summary);
            }
            let tags = tags.into_iter().chain(latency).collect();
            let (token, tags) =
                build_request(BuildToken::Derived(token_prefix), tags, parent.as_deref());
            match start_build(common, &token, &tags, &builds).await? {
                StartedBuild::New { arn } => {
                    summary.image_build_version_arn = Some(arn);
                    Outcome::BuildStarted
                }
                StartedBuild::Earlier { arn, status } => {
                    summary.image_build_version_arn = Some(arn);
                    summary.earlier_build_status = Some(status);
                    Outcome::AlreadyAttempted
                }
                StartedBuild::Yielded { running, .. } => {
                    summary.image_build_version_arn = Some(running);
                    Outcome::QueuedBehindRunningBuild
                }
            }
        }
        BuildDecision::QueuedBehind {
            image_arn,
            same_manifest,
        } => {
            summary.image_build_version_arn = Some(image_arn);
            if same_manifest {
                Outcome::UpToDate
            } else {
                metrics::count(Metric::BuildsQueued, 1);
                Outcome::QueuedBehindRunningBuild
            }
        }
        BuildDecision::AlreadyStarted { image_arn } => {
            summary.image_build_version_arn = Some(image_arn);
            Outcome::UpToDate
        }
    };
    tracing::info!(outcome = ?summary.outcome, version = summary.component_version.as_deref(), "done");
    Ok(summary)
}

fn describe_trigger(pushes: &[Push], deleted: &[ImageRef]) -> String {
    match (pushes, deleted) {
        ([only], []) => format!("push of {}:{}", only.image.repository, only.image.tag),
        ([first, rest @ ..], []) => format!(
            "push of {}:{} and {} more",
            first.image.repository,
            first.image.tag,
            rest.len()
        ),
        ([], [only]) => format!("deletion of {}:{}", only.repository, only.tag),
        ([], [first, rest @ ..]) => format!(
            "deletion of {}:{} and {} more",
            first.repository,
            first.tag,
            rest.len()
        ),
        ([], []) => "reconcile".to_owned(),
        (pushes, deleted) => format!("{} pushes and {} deletions", pushes.len(), deleted.len()),
    }
}
