//! ECR pushes → a new cache component version → one pipeline build.

use serde::Serialize;
use serde_json::Value;

use crate::common::Common;
use crate::ecr;
use crate::error::PrepullError;
use crate::events::{Push, Record, read_input};
use crate::imagebuilder;
use crate::plan::{self, BuildDecision, ComponentPlan};

/// How many times a concurrent writer may take the version this run wanted before it gives
/// up and lets the queue retry.
const MAX_VERSION_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    BuildStarted,
    UpToDate,
    QueuedBehindRunningBuild,
    Ignored,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordNote {
    pub message_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// What the function did, returned as its JSON result. `batchItemFailures` sends rejected
/// records to the dead-letter queue; everything else in the batch is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub component_version: Option<String>,
    pub component_build_version_arn: Option<String>,
    pub image_build_version_arn: Option<String>,
    pub recipe_arn: Option<String>,
    pub manifest_hash: Option<String>,
    /// The cached images after this run, as `image@digest`.
    pub images: Vec<String>,
    /// Pushes that moved a digest.
    pub applied: Vec<String>,
    /// Watched images ECR does not have yet.
    pub unresolved: Vec<String>,
    pub ignored: Vec<RecordNote>,
    pub rejected: Vec<RecordNote>,
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
    let mut summary = Summary {
        outcome: Outcome::Ignored,
        component_version: None,
        component_build_version_arn: None,
        image_build_version_arn: None,
        recipe_arn: None,
        manifest_hash: None,
        images: Vec::new(),
        applied: Vec::new(),
        unresolved: Vec::new(),
        ignored: Vec::new(),
        rejected: Vec::new(),
        batch_item_failures: Vec::new(),
    };
    for input_record in records {
        let message_id = input_record.message_id;
        match input_record.record {
            Record::Push(push) => pushes.push(push),
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
                    Some(id) => summary.batch_item_failures.push(BatchItemFailure {
                        item_identifier: id.clone(),
                    }),
                    None => return Err(PrepullError::InvalidInput(reason.to_string())),
                }
                summary.rejected.push(RecordNote {
                    message_id,
                    reason: reason.to_string(),
                });
            }
        }
    }
    if pushes.is_empty() {
        summary.outcome = if summary.rejected.is_empty() {
            Outcome::Ignored
        } else {
            Outcome::Rejected
        };
        return Ok(summary);
    }

    let trigger = describe_trigger(&pushes);
    let client = &common.clients.imagebuilder;
    let mut resolved: Option<ecr::Resolved> = None;
    let mut attempt = 0;
    let (state, change, created) = loop {
        attempt += 1;
        let state = imagebuilder::read_component_state(client, &config.component_name).await?;
        if resolved.is_none() {
            let wanted = plan::images_to_resolve(&state, &config.images, &pushes);
            resolved = Some(if wanted.is_empty() {
                ecr::Resolved::default()
            } else {
                ecr::resolve(&common.clients.config, &common.clients.ecr, &wanted).await?
            });
        }
        let known = resolved
            .as_ref()
            .map(|r| r.manifest.clone())
            .unwrap_or_default();
        let change = plan::desired_manifest(&state, &config.images, &pushes, &known);
        let Some(component) = plan::plan_component(
            &state,
            &change,
            config.runtime,
            &config.component_name,
            &trigger,
        )?
        else {
            break (state, change, None);
        };
        let arn =
            imagebuilder::create_component(client, &config.component_name, &component).await?;
        if imagebuilder::is_first_build(&arn) {
            tracing::info!(version = %component.version, arn = %arn, "cache component version created");
            break (state, change, Some((component, arn)));
        }
        // Another writer made this version first: ours became a later build of it. The next
        // pass merges every build of it, newest push winning, into the version after.
        tracing::warn!(version = %component.version, arn = %arn, attempt, "a concurrent writer took this version; merging");
        if attempt >= MAX_VERSION_ATTEMPTS {
            return Err(PrepullError::Contention {
                what: "the cache component version",
                attempts: attempt,
            });
        }
    };
    summary.unresolved = resolved
        .map(|r| r.missing.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    summary.applied = change.applied.clone();
    summary.images = change
        .desired
        .images()
        .map(|p| format!("{}@{}", p.image, p.digest))
        .collect();
    let manifest_hash = change.desired.hash();
    summary.manifest_hash = Some(manifest_hash.clone());

    let (version, build_arn) = match &created {
        Some((ComponentPlan { version, .. }, arn)) => (Some(version.clone()), Some(arn.clone())),
        None => (
            state.latest_version.as_ref().map(ToString::to_string),
            state.latest_build_arn.clone(),
        ),
    };
    summary.component_version = version.clone();
    summary.component_build_version_arn = build_arn.clone();
    if let Some(build_arn) = &build_arn {
        summary.recipe_arn = imagebuilder::follow_component_in_recipe(
            client,
            config.pipeline.as_str(),
            &config.component_name,
            build_arn,
            &manifest_hash,
        )
        .await?;
    }

    let builds = imagebuilder::list_builds(client, config.pipeline.as_str()).await?;
    let version = version.unwrap_or_default();
    summary.outcome = match plan::decide_build(&builds, &manifest_hash, &version, "ecr-push") {
        BuildDecision::Start { client_token, tags } => {
            let arn =
                imagebuilder::start_build(client, config.pipeline.as_str(), &client_token, &tags)
                    .await?;
            tracing::info!(image = %arn, "pipeline build started");
            summary.image_build_version_arn = Some(arn);
            Outcome::BuildStarted
        }
        BuildDecision::QueuedBehind { image_arn } => {
            let same_manifest = builds.iter().any(|b| {
                b.arn == image_arn && b.manifest_hash.as_deref() == Some(manifest_hash.as_str())
            });
            summary.image_build_version_arn = Some(image_arn);
            if same_manifest {
                Outcome::UpToDate
            } else {
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

fn describe_trigger(pushes: &[Push]) -> String {
    match pushes {
        [only] => format!("push of {}:{}", only.image.repository, only.image.tag),
        [first, rest @ ..] => format!(
            "push of {}:{} and {} more",
            first.image.repository,
            first.image.tag,
            rest.len()
        ),
        [] => "reconcile".to_owned(),
    }
}
