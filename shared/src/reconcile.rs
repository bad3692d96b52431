//! The one code path that brings the cache component up to date, shared by image-pushed
//! (with the pushes of a batch) and patch-day (with every digest re-read from ECR), and the
//! one way builds are started.

use serde::Serialize;

use crate::common::Common;
use crate::ecr;
use crate::error::{PrepullError, aws_error};
use crate::events::Push;
use crate::imagebuilder::{self, PipelineView, RecipeChange};
use crate::manifest::{Manifest, sha256_hex};
use crate::plan::{self, BuildSummary, ComponentPlan, PARENT_IMAGE_TAG, StartedBuild};

/// How many times a concurrent writer may take the version this run wanted before it gives
/// up and lets the invocation be retried.
const MAX_VERSION_ATTEMPTS: u32 = 5;

/// Where watched images' digests come from, besides the pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Only images the component does not know yet (image-pushed).
    Missing,
    /// Every watched image, ECR being the truth (patch-day's reconcile: pushes can be lost).
    All,
}

/// What the component step found, planned and did.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentOutcome {
    /// The version the next build takes: the one created, or the latest if nothing changed.
    pub version: Option<String>,
    /// Its build-version ARN; unknown for a version a dry run only plans.
    pub build_arn: Option<String>,
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
    /// Watched images ECR does not have yet.
    pub unresolved: Vec<String>,
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
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ComponentOutcome, PrepullError> {
    let config = &common.config;
    let client = &common.clients.imagebuilder;
    let mut resolved: Option<ecr::Resolved> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let state = imagebuilder::read_component_state(client, &config.component_name).await?;
        if resolved.is_none() {
            let wanted = match resolve {
                Resolve::All => config.images.clone(),
                Resolve::Missing => plan::images_to_resolve(&state, &config.images, pushes),
            };
            resolved = Some(if wanted.is_empty() {
                ecr::Resolved::default()
            } else {
                ecr::resolve(&common.clients.config, &common.clients.ecr, &wanted, now).await?
            });
        }
        let found = resolved
            .as_ref()
            .map(|r| r.manifest.clone())
            .unwrap_or_default();
        let change = plan::desired_manifest(&state, &config.images, pushes, &found);
        let planned = plan::plan_component(
            &state,
            &change,
            config.runtime,
            &config.component_name,
            trigger,
        )?;
        let unresolved = resolved
            .as_ref()
            .map(|r| r.missing.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let outcome = |version: Option<String>,
                       build_arn: Option<String>,
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
        let arn =
            imagebuilder::create_component(client, &config.component_name, &component).await?;
        if imagebuilder::is_first_build(&arn) {
            tracing::info!(version = %component.version, arn = %arn, "cache component version created");
            return Ok(outcome(
                Some(component.version.clone()),
                Some(arn),
                Some(component),
                true,
            ));
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
    }
}

/// Reads the pipeline and its recipe, and plans the recipe change the component needs.
pub async fn plan_pipeline(
    common: &Common,
    component: &ComponentOutcome,
) -> Result<(PipelineView, Option<RecipeChange>), PrepullError> {
    let view = imagebuilder::read_pipeline(
        &common.clients.imagebuilder,
        common.config.pipeline.as_str(),
    )
    .await?;
    let change = match &component.build_arn {
        Some(build_arn) => {
            imagebuilder::plan_recipe(&view, &common.config.component_name, build_arn)?
        }
        // A dry run's new version has no ARN yet: a pinned recipe would need a new version.
        None if component.planned.is_some() => {
            imagebuilder::plan_recipe(&view, &common.config.component_name, "(planned)")?
        }
        None => None,
    };
    Ok((view, change))
}

/// The recipe's parent image as it resolves now: the `ssm:` parameter's value, or the
/// reference itself for an AMI ID or image ARN. `None` when the parameter does not exist.
pub async fn current_parent_image(
    common: &Common,
    view: &PipelineView,
) -> Result<Option<String>, PrepullError> {
    let Some(parent) = view.recipe.parent_image() else {
        return Ok(None);
    };
    let Some(parameter) = parent.strip_prefix("ssm:") else {
        return Ok(Some(parent.to_owned()));
    };
    match common
        .clients
        .ssm
        .get_parameter()
        .name(parameter)
        .send()
        .await
    {
        Ok(response) => Ok(response.parameter.and_then(|p| p.value)),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            tracing::warn!(
                parameter,
                "the recipe's parent image parameter does not exist"
            );
            Ok(None)
        }
        Err(error) => Err(aws_error("GetParameter", error)),
    }
}

/// How a build's client token is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildToken {
    /// Exactly this token: a forced build uses its invocation's request id.
    Exact(String),
    /// This prefix and a hash of every tag: the same request converges on one build, and a
    /// request that differs in anything (trigger, manifest, parent image) is a new one
    /// rather than an `IdempotentParameterMismatchException`.
    Derived(String),
}

/// The final token and tags of a build: the parent image's current value is recorded too.
pub fn build_request(
    token: BuildToken,
    mut tags: Vec<(String, String)>,
    parent_image: Option<&str>,
) -> (String, Vec<(String, String)>) {
    if let Some(parent) = parent_image {
        tags.push((PARENT_IMAGE_TAG.to_owned(), parent.to_owned()));
    }
    let token = match token {
        BuildToken::Exact(token) => token.chars().take(36).collect(),
        BuildToken::Derived(prefix) => {
            let mut sorted = tags.clone();
            sorted.sort();
            let joined: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
            plan::client_token(&prefix, "", &sha256_hex(joined.join("\n").as_bytes()))
        }
    };
    (token, tags)
}

/// Starts the pipeline with a token and tags from [`build_request`]. `listed` is the pipeline's
/// builds as listed before the call: a returned ARN among them is an earlier request's build.
pub async fn start_build(
    common: &Common,
    token: &str,
    tags: &[(String, String)],
    listed: &[BuildSummary],
) -> Result<StartedBuild, PrepullError> {
    let arn = imagebuilder::start_build(
        &common.clients.imagebuilder,
        common.config.pipeline.as_str(),
        token,
        tags,
    )
    .await?;
    let started = plan::started_build(arn, listed);
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
    }
    Ok(started)
}
