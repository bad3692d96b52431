//! ECR pushes → a new cache component version → one pipeline build.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{BuildDecision, BuildOutcome, BuildStatus, decide_build};
use prepull_core::events::ecr::{InputRecord, Push, Record, read_input, untie};
use serde::Serialize;
use serde_json::Value;

use crate::aws::imagebuilder;
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::reconcile::{NOTHING_TO_CACHE, Reconciled, Resolve, Run, reconcile_and_plan};
use crate::handlers::start::{Written, start_due};
use crate::metrics;
use prepull_core::image::ImageRef;
use prepull_core::metrics::Metric;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    BuildStarted,
    /// The same build was requested before and ended without an image; Image Builder
    /// returned that build and started nothing (see [`BuildOutcome::AlreadyAttempted`]).
    AlreadyAttempted,
    UpToDate,
    QueuedBehindRunningBuild,
    /// A concurrent writer's newer component version carries this run's change (it merges
    /// what this run wrote); that writer's invocation builds it.
    Superseded,
    #[default]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
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
    let mut summary = Summary::default();
    let (pushes, deleted) = summary.sort_records(records)?;
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
    let run = Run {
        trigger: &trigger,
        dry_run: false,
        now: common.clock.now(),
    };
    let Reconciled {
        component,
        view,
        recipe_change,
    } = reconcile_and_plan(common, &pushes, Resolve::Missing(ask_ecr), &run).await?;
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
    let outcome = match decide_build(&builds, &component.manifest_hash, &version, "ecr-push") {
        BuildDecision::Start(due) => {
            let written = component.build_arn.as_ref().map(|build| Written {
                build,
                manifest_hash: &component.manifest_hash,
            });
            start_due(common, &view, &builds, written, &component.manifest, due).await?
        }
        BuildDecision::Settled(outcome) => {
            if matches!(
                outcome,
                BuildOutcome::Queued {
                    same_manifest: false,
                    ..
                }
            ) {
                metrics::count(Metric::BuildsQueued, 1);
            }
            outcome
        }
    };
    summary.record(outcome);
    tracing::info!(outcome = ?summary.outcome, version = summary.component_version.as_deref(), "done");
    Ok(summary)
}

impl Summary {
    /// Sorts the batch's records: the pushes and the deleted images to act on are returned;
    /// the ignored and rejected ones are noted, the rejected in `batchItemFailures`. A
    /// rejected record that is not from SQS (one event invoked directly) fails the invocation.
    fn sort_records(
        &mut self,
        records: Vec<InputRecord>,
    ) -> Result<(Vec<Push>, Vec<ImageRef>), PrepullError> {
        let mut pushes: Vec<Push> = Vec::new();
        let mut deleted: Vec<ImageRef> = Vec::new();
        let mut failures = SqsBatchResponse::default();
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
                    self.ignored.push(RecordNote {
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
                    self.rejected.push(RecordNote {
                        message_id,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        self.batch_item_failures = failures.batch_item_failures;
        Ok((pushes, deleted))
    }

    /// Where the wanted build ended up, in this function's terms.
    fn record(&mut self, outcome: BuildOutcome) {
        self.outcome = match outcome {
            BuildOutcome::Started(arn) => {
                self.image_build_version_arn = Some(arn);
                Outcome::BuildStarted
            }
            BuildOutcome::AlreadyAttempted { arn, status } => {
                self.image_build_version_arn = Some(arn);
                self.earlier_build_status = Some(status);
                Outcome::AlreadyAttempted
            }
            BuildOutcome::Queued {
                running,
                same_manifest,
            } => {
                self.image_build_version_arn = Some(running);
                if same_manifest {
                    Outcome::UpToDate
                } else {
                    Outcome::QueuedBehindRunningBuild
                }
            }
            BuildOutcome::AlreadyBuilt(arn) => {
                self.image_build_version_arn = Some(arn);
                Outcome::UpToDate
            }
            BuildOutcome::Superseded(newer) => {
                self.superseded_by = Some(newer);
                Outcome::Superseded
            }
            // Not decided for a push: nothing was due.
            BuildOutcome::NotNeeded | BuildOutcome::Withheld(_) => Outcome::UpToDate,
        };
    }
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
