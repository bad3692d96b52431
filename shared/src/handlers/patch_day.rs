//! patch-day: prepull's clock and its "rebuild now" button. Every run reconciles the cache
//! with ECR, then decides whether to build: on patch day, when the parent image moved, when
//! the newest image is too old, when the manifest changed, or when an operator forces it
//! (see [`prepull_core::schedule`]).

use chrono::{DateTime, Utc};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{
    BuildOutcome, BuildRequest, BuildStatus, BuildSummary, is_built, running_build,
};
use prepull_core::events::operator::{PatchDayRequest, read_patch_day_request};
use prepull_core::recipe::RecipeChange;
use prepull_core::schedule::{self, BuildInputs, Condition, Facts};
use serde::Serialize;
use serde_json::Value;

pub use prepull_core::config::PatchDaySettings;

use crate::aws::imagebuilder::{self, PipelineView};
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::reconcile::{
    ComponentOutcome, NOTHING_TO_CACHE, Reconciled, Resolve, Run, reconcile_and_plan,
};
use crate::handlers::start::{Written, current_parent_image, latency_tag, start_planned};
use crate::metrics;
use prepull_core::metrics::Metric;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    BuildStarted,
    /// The same build was requested before and ended without an image; Image Builder
    /// returned that build and started nothing (see [`BuildOutcome::AlreadyAttempted`]).
    AlreadyAttempted,
    #[default]
    UpToDate,
    BuildRunning,
    /// No watched image is in ECR: the cache would be empty, so nothing is built.
    NothingToCache,
}

/// The plan a dry run returns and a real run carries out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Plan {
    pub component: Option<prepull_core::component::ComponentPlan>,
    pub recipe: Option<RecipeChange>,
    /// The build to start, if any: its client token and tags.
    pub build: Option<BuildRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Summary {
    pub outcome: Outcome,
    pub dry_run: bool,
    /// The conditions that hold.
    pub reasons: Vec<&'static str>,
    /// Every condition evaluated, holding or not.
    pub conditions: Vec<Condition>,
    pub component_version: Option<String>,
    pub image_build_version_arn: Option<ImageBuilderArn>,
    /// With `already-attempted`: how that earlier build ended.
    pub earlier_build_status: Option<BuildStatus>,
    pub running_build: Option<ImageBuilderArn>,
    pub images: Vec<String>,
    /// Watched images ECR does not have, that the cache never held.
    pub unresolved: Vec<String>,
    /// Images the cache pinned that ECR no longer has, as `image@digest`: they left the
    /// manifest.
    pub removed: Vec<String>,
    /// Why nothing was built, with `nothing-to-cache`.
    pub reason: Option<String>,
    pub plan: Plan,
}

/// Handles one run. `request_id` makes a forced build's client token unique; `now` is the
/// clock, injected so tests can pick the day.
pub async fn handle(
    common: &Common,
    settings: PatchDaySettings,
    input: Value,
    request_id: &str,
    now: DateTime<Utc>,
) -> Result<Summary, PrepullError> {
    let request = read_patch_day_request(&input)?;
    let Found {
        component,
        view,
        recipe_change,
        builds,
        parent_now,
    } = reconcile(common, &request, now).await?;
    let conditions = evaluate(
        &request,
        settings,
        now,
        &component,
        &view,
        &builds,
        parent_now.as_deref(),
    );
    let reasons: Vec<&'static str> = conditions
        .iter()
        .filter(|c| c.holds)
        .map(|c| c.name)
        .collect();
    let running = running_build(&builds).map(|b| b.arn.clone());
    let nothing_to_cache = component.manifest.is_empty();
    let due = schedule::plan_build(&BuildInputs {
        now,
        reasons: &reasons,
        running: running.is_some(),
        forced: request.forced.as_deref(),
        request_id,
        manifest_hash: &component.manifest_hash,
        component_version: component.version.as_deref().unwrap_or_default(),
    })
    .filter(|_| {
        if nothing_to_cache {
            tracing::warn!("no watched image is in ECR: the cache would be empty; no build");
        }
        !nothing_to_cache
    });
    // Made in full for a dry run too: its plan shows the request the real run sends.
    let build = match due {
        Some(due) => Some(due.request(
            latency_tag(common, &component.manifest, &builds).await,
            parent_now.as_deref(),
        )),
        None => None,
    };
    let mut summary = Summary {
        outcome: match (&running, &build) {
            (Some(_), _) => Outcome::BuildRunning,
            (None, Some(_)) => Outcome::BuildStarted,
            (None, None) if nothing_to_cache => Outcome::NothingToCache,
            (None, None) => Outcome::UpToDate,
        },
        dry_run: request.dry_run,
        reasons,
        conditions,
        component_version: component.version.clone(),
        running_build: running,
        images: component.images.clone(),
        unresolved: component.unresolved.clone(),
        removed: component.removed.clone(),
        reason: nothing_to_cache.then(|| NOTHING_TO_CACHE.to_owned()),
        ..Summary::default()
    };
    if !request.dry_run && summary.outcome == Outcome::BuildRunning && !summary.reasons.is_empty() {
        // A build is due while another runs: build-finished's follow-up takes the change
        // only if the manifest moved; the rest waits for the next run.
        metrics::count(Metric::BuildsQueued, 1);
    }
    if !request.dry_run
        && let Some(build) = &build
    {
        let written = component.build_arn.as_ref().map(|build| Written {
            build,
            manifest_hash: &component.manifest_hash,
        });
        let outcome = start_planned(common, &view, &builds, written, build).await?;
        summary.record(outcome, component.build_arn.as_ref())?;
    }
    summary.plan = Plan {
        component: component.planned.clone(),
        recipe: recipe_change,
        build,
    };
    tracing::info!(outcome = ?summary.outcome, reasons = ?summary.reasons, dry_run = request.dry_run, "patch-day run done");
    Ok(summary)
}

/// What a run reconciled and read before it decides.
struct Found {
    component: ComponentOutcome,
    view: PipelineView,
    recipe_change: Option<RecipeChange>,
    builds: Vec<BuildSummary>,
    parent_now: Option<String>,
}

/// Reconciles the component with ECR (writing the new version and the recipe change unless it
/// is a dry run), then reads the pipeline's builds and the parent image.
async fn reconcile(
    common: &Common,
    request: &PatchDayRequest,
    now: DateTime<Utc>,
) -> Result<Found, PrepullError> {
    let trigger = match &request.forced {
        Some(reason) => format!("forced: {reason}"),
        None => "scheduled reconcile".to_owned(),
    };
    let run = Run {
        trigger: &trigger,
        dry_run: request.dry_run,
        now,
    };
    // Boxed: the reconcile's future nests the component read, ECR and the pipeline read, and
    // inside the function's whole future its layout went past rustc's query depth limit.
    let Reconciled {
        component,
        view,
        recipe_change,
    } = Box::pin(reconcile_and_plan(common, &[], Resolve::All, &run)).await?;
    if !request.dry_run
        && let (Some(change), Some(build_arn)) = (&recipe_change, &component.build_arn)
    {
        let recipe_arn = imagebuilder::apply_recipe_change(
            common.clients.imagebuilder(),
            &view,
            change,
            build_arn,
            &component.manifest_hash,
        )
        .await?;
        tracing::info!(recipe = %recipe_arn, "recipe follows the new component version");
    }
    // After the recipe change: the two reads are independent round trips.
    let (builds, parent_now) = tokio::join!(
        imagebuilder::list_builds(
            common.clients.imagebuilder(),
            common.config.pipeline.as_str(),
        ),
        current_parent_image(common, &view),
    );
    let (builds, parent_now) = (builds?, parent_now?);
    Ok(Found {
        component,
        view,
        recipe_change,
        builds,
        parent_now,
    })
}

/// Every condition for a build, from what the run read.
fn evaluate(
    request: &PatchDayRequest,
    settings: PatchDaySettings,
    now: DateTime<Utc>,
    component: &ComponentOutcome,
    view: &PipelineView,
    builds: &[BuildSummary],
    parent_now: Option<&str>,
) -> Vec<Condition> {
    let manifest_changed = schedule::manifest_change(
        component.planned.as_ref().map(|p| p.version.as_str()),
        component.version.as_deref(),
        is_built(builds, &component.manifest_hash),
    );
    schedule::evaluate(&Facts {
        now,
        settings,
        builds,
        manifest_changed: manifest_changed.as_deref(),
        parent_reference: view.recipe.parent_image(),
        parent_now,
        forced: request.forced.as_deref(),
    })
}

impl Summary {
    /// Where the started build ended up, in this function's terms.
    fn record(
        &mut self,
        outcome: BuildOutcome,
        written: Option<&ImageBuilderArn>,
    ) -> Result<(), PrepullError> {
        match outcome {
            BuildOutcome::Started(arn) => self.image_build_version_arn = Some(arn),
            BuildOutcome::AlreadyAttempted { arn, status } => {
                self.image_build_version_arn = Some(arn);
                self.earlier_build_status = Some(status);
                self.outcome = Outcome::AlreadyAttempted;
            }
            BuildOutcome::Queued { running, .. } => {
                self.running_build = Some(running);
                self.outcome = Outcome::BuildRunning;
            }
            // Rare for patch-day: a push wrote a newer version during this run. That push's
            // invocation builds it; this run fails and its retry reads again.
            BuildOutcome::Superseded(newer) => {
                return Err(PrepullError::ComponentNotVisible {
                    reference: "the recipe's cache component".to_owned(),
                    resolved: newer.to_string(),
                    written: written.map(ToString::to_string).unwrap_or_default(),
                });
            }
            other => {
                return Err(PrepullError::Unexpected {
                    what: "a build start",
                    detail: format!("answered {other}"),
                });
            }
        }
        Ok(())
    }
}
