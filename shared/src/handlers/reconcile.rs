//! The one code path that brings the cache component up to date, shared by image-pushed
//! (with the pushes of a batch) and patch-day (with every digest re-read from ECR), and the
//! one way builds are started.

use chrono::{DateTime, Utc};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{
    BuildSummary, OLDEST_NEW_PUSH_TAG, StartedBuild, newest_available, started_build,
    unlisted_predecessors, yields_to,
};
use prepull_core::component::{self, ComponentPlan, Resolution};
use prepull_core::events::ecr::Push;
use prepull_core::image::ImageRef;
use prepull_core::manifest::Manifest;
use prepull_core::recipe::RecipeChange;
use prepull_core::registry::EcrState;
use serde::Serialize;

use crate::aws::imagebuilder::{self, ComponentWrite, PipelineView};
use crate::aws::{ecr, ssm};
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
    trigger: &str,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<ComponentOutcome, PrepullError> {
    let config = &common.config;
    let client = common.clients.imagebuilder();
    // Everything ECR answers in this run, so a pass after a concurrent writer asks only for
    // what that writer's pins add.
    let mut ecr_state = EcrState::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let state = imagebuilder::read_component_state(client, &config.component_name).await?;
        // A push tied with the pinned digest's push leaves its image to ECR, as a tie inside
        // one batch does (see `untie`).
        let tied = component::tied_with_known(&state, pushes);
        let pushes: Vec<Push> = pushes
            .iter()
            .filter(|p| !tied.contains(&p.image))
            .cloned()
            .collect();
        let pushes = pushes.as_slice();
        let mut wanted = match &resolve {
            Resolve::All => config.images.clone(),
            Resolve::Missing(also) => {
                let mut wanted = component::images_to_resolve(&state, &config.images, pushes);
                for image in also.iter().chain(&tied) {
                    if !wanted.contains(image) {
                        wanted.push(image.clone());
                    }
                }
                wanted
            }
        };
        // A build must not start with a digest ECR no longer has (its pull would fail on the
        // build instance, and every later build's too): the pins this run neither reads by tag
        // nor saw pushed are confirmed in the same call per repository, with their tags, so
        // one that is gone is decided by its tag with no second read.
        let to_confirm = component::pins_to_confirm(&state, &config.images, &wanted, pushes);
        let tags: Vec<ImageRef> = wanted
            .iter()
            .cloned()
            .chain(to_confirm.iter().map(|(image, _)| image.clone()))
            .collect();
        ecr::read_into(&common.clients, &mut ecr_state, &tags, &to_confirm).await?;
        let lost: Vec<ImageRef> = to_confirm
            .iter()
            .filter(|(image, digest)| ecr_state.lacks_digest(image, digest))
            .map(|(image, _)| image.clone())
            .collect();
        if !lost.is_empty() {
            tracing::warn!(images = ?lost.iter().map(ToString::to_string).collect::<Vec<_>>(), "pinned digests ECR no longer has: their tags decide");
        }
        wanted.extend(
            lost.into_iter()
                .filter(|image| !wanted.contains(image))
                .collect::<Vec<_>>(),
        );
        let (found, gone) = ecr_state.resolve(&wanted, now);
        let change = component::desired_manifest(&state, &config.images, pushes, &found, &gone);
        let planned = component::plan_component(
            &state,
            &change,
            config.runtime,
            &config.component_name,
            trigger,
        )?;
        // Missing images the cache held are `removed`; the rest it never had.
        let unresolved = gone
            .iter()
            .filter(|image| state.merged_manifest.digest_of(image).is_none())
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        let outcome = |version: Option<String>,
                       build_arn: Option<ImageBuilderArn>,
                       planned: Option<ComponentPlan>,
                       created: bool| ComponentOutcome {
            version,
            build_arn,
            planned,
            created,
            manifest_hash: change.desired.hash(),
            manifest: change.desired.clone(),
            images: change
                .desired
                .images()
                .map(|p| format!("{}@{}", p.image, p.digest))
                .collect(),
            applied: change.applied.clone(),
            unresolved,
            removed: change.removed.clone(),
        };
        let Some(component) = planned else {
            return Ok(outcome(
                state.latest_version.as_ref().map(ToString::to_string),
                state.latest_build_arn.clone(),
                None,
                false,
            ));
        };
        if dry_run {
            return Ok(outcome(
                Some(component.version.clone()),
                None,
                Some(component),
                false,
            ));
        }
        match imagebuilder::create_component(client, &config.component_name, &component).await? {
            ComponentWrite::Created(arn) if component::written_first(&arn) => {
                tracing::info!(version = %component.version, arn = %arn, "cache component version created");
                metrics::count(Metric::ComponentVersionsWritten, 1);
                return Ok(outcome(
                    Some(component.version.clone()),
                    Some(arn),
                    Some(component),
                    true,
                ));
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

/// Reconciles the component (reads it, and writes the new version unless `dry_run`) while
/// the pipeline and its recipe are read beside it, then plans the recipe change the component
/// needs. The two share nothing until that plan, and on AWS each read is a round trip. Both
/// run to the end, so a failed pipeline read never cuts a component write short; the
/// component's error is reported first.
pub async fn reconcile_and_plan(
    common: &Common,
    pushes: &[Push],
    resolve: Resolve,
    trigger: &str,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<(ComponentOutcome, PipelineView, Option<RecipeChange>), PrepullError> {
    let (component, view) = tokio::join!(
        reconcile_component(common, pushes, resolve, trigger, dry_run, now),
        imagebuilder::read_pipeline(
            common.clients.imagebuilder(),
            common.config.pipeline.as_str()
        ),
    );
    let (component, view) = (component?, view?);
    let change = match &component.build_arn {
        Some(build_arn) => {
            imagebuilder::plan_recipe(&view, &common.config.component_name, build_arn.as_str())?
        }
        // A dry run's new version has no ARN yet: a pinned recipe would need a new version.
        None if component.planned.is_some() => {
            imagebuilder::plan_recipe(&view, &common.config.component_name, "(planned)")?
        }
        None => None,
    };
    Ok((component, view, change))
}

/// Before a start: waits for the written version to be visible (see
/// [`await_component_visible`]) while the parent image is read (see
/// [`current_parent_image`]); the two are independent round trips.
pub async fn visible_with_parent(
    common: &Common,
    view: &PipelineView,
    written: Option<&ImageBuilderArn>,
    written_manifest: &str,
) -> Result<(Visibility, Option<String>), PrepullError> {
    let visible = async {
        match written {
            Some(written) => await_component_visible(common, view, written, written_manifest).await,
            None => Ok(Visibility::Written),
        }
    };
    let (visibility, parent) = tokio::join!(visible, current_parent_image(common, view));
    Ok((visibility?, parent?))
}

/// The `prepull:oldest-new-push` tag for a build of `manifest`: the oldest push among its
/// images that the newest AVAILABLE build's manifest lacks (see
/// [`prepull_core::metrics::oldest_new_push`]). build-finished measures the push-to-AMI latency
/// from it when it publishes the AMI. Only a metric depends on it, so a failed read of the
/// earlier manifest is logged and the build goes ahead without the tag.
pub async fn latency_tag(
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
pub enum Visibility {
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
pub async fn await_component_visible(
    common: &Common,
    view: &PipelineView,
    written: &ImageBuilderArn,
    written_manifest: &str,
) -> Result<Visibility, PrepullError> {
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

/// Starts the pipeline with a token and tags from
/// [`prepull_core::build::build_request`]. `listed` is the pipeline's builds as listed before
/// the call: a returned ARN among them is an earlier request's build.
pub async fn start_build(
    common: &Common,
    token: &str,
    tags: &[(String, String)],
    listed: &[BuildSummary],
) -> Result<StartedBuild, PrepullError> {
    let arn = imagebuilder::start_build(
        common.clients.imagebuilder(),
        common.config.pipeline.as_str(),
        token,
        tags,
    )
    .await?;
    let mut started = started_build(arn, listed);
    if let StartedBuild::New { arn } = &started {
        let now = builds_started_before(common, arn).await?;
        if let Some(first) = yields_to(arn, &now) {
            imagebuilder::cancel_build(common.clients.imagebuilder(), arn).await?;
            started = StartedBuild::Yielded {
                cancelled: arn.clone(),
                running: first.arn.clone(),
            };
        }
    }
    metrics::count(
        match &started {
            StartedBuild::New { .. } => Metric::BuildsStarted,
            StartedBuild::Earlier { .. } => Metric::BuildsAlreadyAttempted,
            StartedBuild::Yielded { .. } => Metric::BuildsQueued,
        },
        1,
    );
    match &started {
        StartedBuild::New { arn } => tracing::info!(image = %arn, "pipeline build started"),
        StartedBuild::Earlier { arn, status } => tracing::warn!(
            image = %arn,
            status = %status,
            token,
            "the same build request was made before and that build ended without an image; \
             Image Builder started nothing new (a changed manifest, the next day's schedule or a \
             forced run starts one)"
        ),
        StartedBuild::Yielded { cancelled, running } => tracing::warn!(
            cancelled = %cancelled,
            running = %running,
            "another invocation started a build first; this one was cancelled and the change \
             waits for that build's follow-up"
        ),
    }
    Ok(started)
}
