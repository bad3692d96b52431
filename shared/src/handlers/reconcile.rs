//! The one code path that brings the cache component up to date, shared by image-pushed
//! (with the pushes of a batch) and patch-day (with every digest re-read from ECR). Builds are
//! started by [`start`].

use chrono::{DateTime, Utc};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::component::{self, ComponentPlan, ComponentState, ManifestChange};
use prepull_core::events::ecr::Push;
use prepull_core::image::ImageRef;
use prepull_core::manifest::Manifest;
use prepull_core::recipe::RecipeChange;
use prepull_core::registry::EcrState;
use serde::Serialize;

use crate::aws::ecr;
use crate::aws::imagebuilder::{self, ComponentWrite, PipelineView};
use crate::common::Common;
use crate::error::PrepullError;
use crate::metrics;
use prepull_core::metrics::Metric;

/// Why nothing is built when the manifest is empty.
pub const NOTHING_TO_CACHE: &str = "no watched image is in ECR (every watched tag is missing or was deleted): an AMI would cache nothing, so no build starts";

/// How many times a concurrent writer may take the version this run wanted before it gives
/// up and lets the invocation be retried.
const MAX_VERSION_ATTEMPTS: u32 = 5;

/// Where watched images' digests come from, besides the pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolve {
    /// Images the component does not know yet, and these (image-pushed: the images a batch's
    /// pushes cannot decide).
    Missing(Vec<ImageRef>),
    /// Every watched image, ECR being the truth (patch-day's reconcile: pushes can be lost).
    All,
}

/// What the component step found, planned and did.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentOutcome {
    /// The version the next build takes: the one created, or the latest if nothing changed.
    pub version: Option<String>,
    /// Its build-version ARN; unknown for a version a dry run only plans.
    pub build_arn: Option<ImageBuilderArn>,
    /// The version this run creates (or, in a dry run, would create).
    pub planned: Option<ComponentPlan>,
    pub created: bool,
    pub manifest_hash: String,
    #[serde(skip)]
    pub manifest: Manifest,
    /// The cached images after this run, as `image@digest`.
    pub images: Vec<String>,
    /// Digests that moved.
    pub applied: Vec<String>,
    /// Watched images ECR does not have.
    pub unresolved: Vec<String>,
    /// Pinned images ECR no longer has, as `image@digest`: they left the manifest.
    pub removed: Vec<String>,
}

/// Reads the component, works out the manifest, and (unless `dry_run`) writes the new version.
/// Digests read from ECR are pinned with `now`, the time they were known to be current.
/// Concurrent writers of the same version are detected by the build number of the version
/// written, and merged into the next one.
pub async fn reconcile_component(
    common: &Common,
    pushes: &[Push],
    resolve: Resolve,
    run: &Run<'_>,
) -> Result<ComponentOutcome, PrepullError> {
    let config = &common.config;
    let client = common.clients.imagebuilder();
    // Everything ECR answers in this run, so a pass after a concurrent writer asks only for
    // what that writer's pins add.
    let mut ecr_state = EcrState::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Every watched tag is read beside the component on the first pass, one call per
        // repository: most runs need nothing more from ECR (a pin its tag still names is
        // confirmed by it), and on AWS the two reads are one round trip, not two.
        let state = if attempt == 1 {
            let (state, tags) = tokio::join!(
                imagebuilder::read_component_state(client, &config.component_name),
                ecr::read_into(&common.clients, &mut ecr_state, &config.images, &[]),
            );
            let state = state?;
            tags?;
            state
        } else {
            imagebuilder::read_component_state(client, &config.component_name).await?
        };
        // A push tied with the pinned digest's push leaves its image to ECR, as a tie inside
        // one batch does (see `untie`).
        let tied = component::tied_with_known(&state, pushes);
        let pushes: Vec<Push> = pushes
            .iter()
            .filter(|p| !tied.contains(&p.image))
            .cloned()
            .collect();
        let wanted = match &resolve {
            Resolve::All => config.images.clone(),
            Resolve::Missing(also) => {
                let mut wanted = component::images_to_resolve(&state, &config.images, &pushes);
                add_new(&mut wanted, also.iter().chain(&tied).cloned());
                wanted
            }
        };
        let (found, gone) =
            read_ecr(common, &mut ecr_state, &state, wanted, &pushes, run.now).await?;
        let change = component::desired_manifest(&state, &config.images, &pushes, &found, &gone);
        let planned = component::plan_component(
            &state,
            &change,
            config.runtime,
            &config.component_name,
            run.trigger,
        )?;
        let outcome = ComponentOutcome::of(&state, &change, &gone);
        let Some(component) = planned else {
            return Ok(outcome);
        };
        if run.dry_run {
            return Ok(outcome.planned(component, None));
        }
        match imagebuilder::create_component(client, &config.component_name, &component).await? {
            ComponentWrite::Created(arn) if component::written_first(&arn) => {
                tracing::info!(version = %component.version, arn = %arn, "cache component version created");
                metrics::count(Metric::ComponentVersionsWritten, 1);
                return Ok(outcome.planned(component, Some(arn)));
            }
            // Another writer made this version first: ours became a later build of it, or
            // Image Builder refused it. The next pass merges every build of the version,
            // newest push winning, into the version after.
            ComponentWrite::Created(arn) => {
                tracing::warn!(version = %component.version, arn = %arn, attempt, "a concurrent writer took this version; merging");
            }
            ComponentWrite::VersionTaken => {
                tracing::warn!(version = %component.version, attempt, "a concurrent writer took this version (ResourceInUseException); merging");
            }
        }
        if attempt >= MAX_VERSION_ATTEMPTS {
            return Err(PrepullError::Contention {
                what: "the cache component version",
                attempts: attempt,
            });
        }
        // The other writer's version may not be visible to the reads yet (Image Builder is
        // eventually consistent): give it a moment before merging it.
        tokio::time::sleep(std::time::Duration::from_millis(250 * u64::from(attempt))).await;
    }
}

/// Reads from ECR, into `ecr_state`, what it does not know yet of the `wanted` tags and of
/// every pin the run keeps without a push or a tag read, and returns the digests found for the
/// tags that decide and the images ECR lacks. A build must not start with a digest ECR no
/// longer has (its pull would fail on the build instance, and every later build's too): a pin
/// its tag still names is confirmed by the tag read; one whose tag moved on is read by digest
/// (one call per repository), and one that is gone is decided by its tag.
async fn read_ecr(
    common: &Common,
    ecr_state: &mut EcrState,
    state: &ComponentState,
    mut wanted: Vec<ImageRef>,
    pushes: &[Push],
    now: DateTime<Utc>,
) -> Result<(Manifest, Vec<ImageRef>), PrepullError> {
    let to_confirm = component::pins_to_confirm(state, &common.config.images, &wanted, pushes);
    let tags: Vec<ImageRef> = wanted
        .iter()
        .cloned()
        .chain(to_confirm.iter().map(|(image, _)| image.clone()))
        .collect();
    ecr::read_into(&common.clients, ecr_state, &tags, &to_confirm).await?;
    let lost: Vec<ImageRef> = to_confirm
        .iter()
        .filter(|(image, digest)| ecr_state.lacks_digest(image, digest))
        .map(|(image, _)| image.clone())
        .collect();
    if !lost.is_empty() {
        tracing::warn!(images = ?lost.iter().map(ToString::to_string).collect::<Vec<_>>(), "pinned digests ECR no longer has: their tags decide");
    }
    add_new(&mut wanted, lost);
    Ok(ecr_state.resolve(&wanted, now))
}

fn add_new(images: &mut Vec<ImageRef>, more: impl IntoIterator<Item = ImageRef>) {
    for image in more {
        if !images.contains(&image) {
            images.push(image);
        }
    }
}

impl ComponentOutcome {
    /// The outcome when no version is written: the latest, unchanged.
    fn of(state: &ComponentState, change: &ManifestChange, gone: &[ImageRef]) -> Self {
        Self {
            version: state.latest_version.as_ref().map(ToString::to_string),
            build_arn: state.latest_build_arn.clone(),
            planned: None,
            created: false,
            manifest_hash: change.desired.hash(),
            manifest: change.desired.clone(),
            images: change
                .desired
                .images()
                .map(|p| format!("{}@{}", p.image, p.digest))
                .collect(),
            applied: change.applied.clone(),
            // Missing images the cache held are `removed`; the rest it never had.
            unresolved: gone
                .iter()
                .filter(|image| state.merged_manifest.digest_of(image).is_none())
                .map(ToString::to_string)
                .collect(),
            removed: change.removed.clone(),
        }
    }

    /// The outcome with `plan`'s version: created as `written`, or only planned (a dry run).
    fn planned(self, plan: ComponentPlan, written: Option<ImageBuilderArn>) -> Self {
        Self {
            version: Some(plan.version.clone()),
            created: written.is_some(),
            build_arn: written,
            planned: Some(plan),
            ..self
        }
    }
}

/// What a reconcile found and wrote, and the pipeline read beside it.
#[derive(Debug)]
pub struct Reconciled {
    pub component: ComponentOutcome,
    pub view: PipelineView,
    /// The recipe change the component needs (a pinned recipe), planned, not applied.
    pub recipe_change: Option<RecipeChange>,
}

/// Reconciles the component (reads it, and writes the new version unless `dry_run`) while the
/// pipeline and its recipe are read beside it, then plans the recipe change the component
/// needs. The two share nothing until that plan, and on AWS each read is a round trip. Both
/// run to the end, so a failed pipeline read never cuts a component write short; the
/// component's error is reported first. The pipeline's builds are listed by the caller after
/// the write, not beside it: a build another invocation starts meanwhile must be in the
/// listing that decides whether this run starts one.
pub async fn reconcile_and_plan(
    common: &Common,
    pushes: &[Push],
    resolve: Resolve,
    run: &Run<'_>,
) -> Result<Reconciled, PrepullError> {
    let (component, view) = tokio::join!(
        reconcile_component(common, pushes, resolve, run),
        imagebuilder::read_pipeline(
            common.clients.imagebuilder(),
            common.config.pipeline.as_str()
        ),
    );
    let (component, view) = (component?, view?);
    let recipe_change = match &component.build_arn {
        Some(build_arn) => {
            imagebuilder::plan_recipe(&view, &common.config.component_name, build_arn.as_str())?
        }
        // A dry run's new version has no ARN yet: a pinned recipe would need a new version.
        None if component.planned.is_some() => {
            imagebuilder::plan_recipe(&view, &common.config.component_name, "(planned)")?
        }
        None => None,
    };
    Ok(Reconciled {
        component,
        view,
        recipe_change,
    })
}

/// What started a run, whether it may write, and its clock.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub trigger: &'a str,
    pub dry_run: bool,
    /// When digests read from ECR were known to be current.
    pub now: DateTime<Utc>,
}
