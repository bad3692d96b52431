//! Image Builder reads and writes, each one AWS call or one paginated listing. Decisions are
//! made in `prepull_core`; these functions only read the facts and carry the plans out.

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{
    ComponentConfiguration, Filter, ImagePipeline, ImageRecipe, Ownership, Platform,
};
use chrono::{DateTime, Utc};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{
    BuildStatus, BuildSummary, COMPONENT_VERSION_TAG, MANIFEST_TAG, OLDEST_NEW_PUSH_TAG,
    PARENT_IMAGE_TAG,
};
use prepull_core::component::{ComponentPlan, ComponentState};
use prepull_core::document;
use prepull_core::launch_template::WINDOWS_ROOT_DEVICE;
use prepull_core::parameter::DistributedAmi;
use prepull_core::recipe::{self, RecipeChange, RecipeFacts};
use prepull_core::token::client_token;
use semver::Version;

use crate::aws::errors::{aws_error, missing};
use crate::error::PrepullError;

/// Reads an ARN AWS returned; one that does not parse is a surprise worth an error.
fn returned_arn(what: &'static str, text: &str) -> Result<ImageBuilderArn, PrepullError> {
    ImageBuilderArn::parse(text).map_err(|e| PrepullError::Unexpected {
        what,
        detail: e.to_string(),
    })
}

/// Get calls answer `"tags": {}` for an untagged resource, and a tag map sent back must hold 1
/// to 50 entries: an empty map goes back as no map at all.
fn non_empty<K, V>(
    tags: Option<std::collections::HashMap<K, V>>,
) -> Option<std::collections::HashMap<K, V>> {
    tags.filter(|t| !t.is_empty())
}

/// Reads a status AWS returned.
fn returned_status(
    what: &'static str,
    status: Option<&aws_sdk_imagebuilder::types::ImageStatus>,
) -> Result<BuildStatus, PrepullError> {
    let text = status.map_or("", |s| s.as_str());
    text.parse().map_err(
        |e: prepull_core::build::UnknownStatus| PrepullError::Unexpected {
            what,
            detail: e.to_string(),
        },
    )
}

/// The largest page Image Builder's List operations return ("The largest page size that you
/// can request is 100 items"; the default is 25): a long-lived pipeline's builds in a quarter
/// of the calls.
const LARGEST_PAGE: i32 = 100;

/// How many recipe versions are tried when the planned one exists already.
const MAX_RECIPE_ATTEMPTS: u32 = 5;

/// How many versions beyond what ListComponents reports are probed for.
const MAX_PROBED_VERSIONS: usize = 10;

/// Every build-version ARN of one component version; none if the version does not exist.
async fn list_build_arns(
    client: &Client,
    version_arn: &ImageBuilderArn,
) -> Result<Vec<ImageBuilderArn>, PrepullError> {
    let mut arns = Vec::new();
    let mut pages = client
        .list_component_build_versions()
        .component_version_arn(version_arn.as_str())
        .max_results(LARGEST_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for summary in page.component_summary_list() {
                    if let Some(arn) = summary.arn() {
                        arns.push(returned_arn("ListComponentBuildVersions", arn)?);
                    }
                }
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.meta().code() == Some("ResourceNotFoundException")) =>
            {
                break;
            }
            Err(error) => return Err(aws_error("ListComponentBuildVersions", error)),
        }
    }
    Ok(arns)
}

/// The manifest of one component version's build whose document hashes to `manifest_hash`
/// (a version has more than one build only when concurrent writers raced for it); `None` when
/// no build of the version carries it.
pub async fn manifest_of_version(
    client: &Client,
    version_arn: &ImageBuilderArn,
    manifest_hash: &str,
) -> Result<Option<prepull_core::manifest::Manifest>, PrepullError> {
    // Nearly every version has one build, `/1`: read it straight away, and list the builds
    // only when it is not the one (concurrent writers raced for the version). On AWS that is
    // one round trip instead of two.
    let first = format!("{version_arn}/1");
    if let Some((_, manifest)) = read_component(client, &first).await?
        && manifest.hash() == manifest_hash
    {
        return Ok(Some(manifest));
    }
    let mut builds = list_build_arns(client, version_arn).await?;
    builds.sort_by_key(ImageBuilderArn::build);
    for arn in builds.iter().rev().filter(|arn| arn.build() != Some(1)) {
        if let Some((_, manifest)) = read_component(client, arn.as_str()).await?
            && manifest.hash() == manifest_hash
        {
            return Ok(Some(manifest));
        }
    }
    Ok(None)
}

/// Reads the cache component: its highest version, and every build of that version.
pub async fn read_component_state(
    client: &Client,
    component_name: &str,
) -> Result<ComponentState, PrepullError> {
    let mut versions: Vec<(Version, ImageBuilderArn)> = Vec::new();
    let mut pages = client
        .list_components()
        .owner(Ownership::SelfValue)
        .filters(
            Filter::builder()
                .name("name")
                .values(component_name)
                .build(),
        )
        .max_results(LARGEST_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ListComponents", e))?;
        for summary in page.component_version_list() {
            let (Some(arn), Some(version)) = (summary.arn(), summary.version()) else {
                continue;
            };
            if summary.name() != Some(component_name) {
                continue;
            }
            if let Some(version) = prepull_core::arn::parse_exact_version(version) {
                versions.push((version, returned_arn("ListComponents", arn)?));
            }
        }
    }
    let Some((latest_version, version_arn)) = versions.into_iter().max_by(|a, b| a.0.cmp(&b.0))
    else {
        return Ok(ComponentState::default());
    };

    // ListComponents can lag behind a version created moments ago; the next patch versions
    // are probed directly, so two pushes in quick succession do not plan the same version.
    let (mut latest_version, mut version_arn) = (latest_version, version_arn);
    let mut build_arns = list_build_arns(client, &version_arn).await?;
    for _ in 0..MAX_PROBED_VERSIONS {
        let next = prepull_core::component::next_version(Some(&latest_version));
        let next_arn = version_arn.at_version(&next);
        let next_builds = list_build_arns(client, &next_arn).await?;
        if next_builds.is_empty() {
            break;
        }
        (latest_version, version_arn, build_arns) = (next, next_arn, next_builds);
    }
    build_arns.sort_by_key(ImageBuilderArn::build);

    let mut state = ComponentState {
        latest_version: Some(latest_version.clone()),
        ..ComponentState::default()
    };
    for arn in &build_arns {
        let response = client
            .get_component()
            .component_build_version_arn(arn.as_str())
            .send()
            .await
            .map_err(|e| aws_error("GetComponent", e))?;
        let data = response
            .component()
            .and_then(|c| c.data())
            .unwrap_or_default();
        let (manifest, runtime) = document::read_manifest(data)?;
        state.merged_manifest.merge_newest(&manifest);
        state.latest_manifest = manifest;
        state.latest_build_arn = Some(arn.clone());
        state.latest_runtime = runtime;
    }
    Ok(state)
}

/// What a component write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentWrite {
    /// The new build's ARN: `/1`, or a later build when another writer made the version first
    /// (Image Builder since November 2025).
    Created(ImageBuilderArn),
    /// Another writer made the version first and Image Builder refused a second one
    /// (`ResourceInUseException`).
    VersionTaken,
}

/// Creates a component version.
pub async fn create_component(
    client: &Client,
    component_name: &str,
    plan: &ComponentPlan,
) -> Result<ComponentWrite, PrepullError> {
    let response = client
        .create_component()
        .name(component_name)
        .semantic_version(&plan.version)
        .platform(Platform::Windows)
        .description(&plan.description)
        .change_description(format!(
            "manifest {}",
            &plan.manifest_hash[..16.min(plan.manifest_hash.len())]
        ))
        .data(&plan.document)
        .client_token(&plan.client_token)
        .tags(MANIFEST_TAG, &plan.manifest_hash)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error)
            if error.as_service_error().is_some_and(
                aws_sdk_imagebuilder::operation::create_component::CreateComponentError::is_resource_in_use_exception,
            ) =>
        {
            return Ok(ComponentWrite::VersionTaken);
        }
        Err(error) => return Err(aws_error("CreateComponent", error)),
    };
    let arn = response
        .component_build_version_arn()
        .ok_or_else(|| missing("CreateComponent", "componentBuildVersionArn"))?;
    returned_arn("CreateComponent", arn).map(ComponentWrite::Created)
}

/// The pipeline and the recipe it builds, read once per run.
#[derive(Debug, Clone)]
pub struct PipelineView {
    pub pipeline: ImagePipeline,
    pub recipe: ImageRecipe,
}

pub async fn read_pipeline(
    client: &Client,
    pipeline_arn: &str,
) -> Result<PipelineView, PrepullError> {
    let response = client
        .get_image_pipeline()
        .image_pipeline_arn(pipeline_arn)
        .send()
        .await
        .map_err(|e| aws_error("GetImagePipeline", e))?;
    let pipeline = response
        .image_pipeline
        .ok_or_else(|| missing("GetImagePipeline", "imagePipeline"))?;
    let recipe_arn = pipeline
        .image_recipe_arn()
        .ok_or_else(|| PrepullError::Unexpected {
            what: "GetImagePipeline",
            detail: format!("pipeline {pipeline_arn} has no image recipe"),
        })?;
    let response = client
        .get_image_recipe()
        .image_recipe_arn(recipe_arn)
        .send()
        .await
        .map_err(|e| aws_error("GetImageRecipe", e))?;
    let recipe = response
        .image_recipe
        .ok_or_else(|| missing("GetImageRecipe", "imageRecipe"))?;
    Ok(PipelineView { pipeline, recipe })
}

/// Whether the recipe needs a new version to use `component_build_arn` (see
/// [`recipe::plan_recipe`]). A recipe without the component is a setup error.
pub fn plan_recipe(
    view: &PipelineView,
    component_name: &str,
    component_build_arn: &str,
) -> Result<Option<RecipeChange>, PrepullError> {
    let arns: Vec<&str> = view
        .recipe
        .components()
        .iter()
        .map(ComponentConfiguration::component_arn)
        .collect();
    let facts = RecipeFacts {
        name: view.recipe.name().unwrap_or_default(),
        version: view.recipe.version().unwrap_or_default(),
        component_arns: &arns,
    };
    recipe::plan_recipe(facts, component_name, component_build_arn).map_err(|problem| {
        PrepullError::Recipe {
            pipeline: view.pipeline.arn().unwrap_or_default().to_owned(),
            recipe: view.recipe.arn().unwrap_or_default().to_owned(),
            component: component_name.to_owned(),
            problem,
        }
    })
}

/// Creates the new recipe version, copying every field of the current one, then updates the
/// pipeline by read-modify-write, resending every field it read. Returns the new recipe ARN.
pub async fn apply_recipe_change(
    client: &Client,
    view: &PipelineView,
    change: &RecipeChange,
    component_build_arn: &ImageBuilderArn,
    manifest_hash: &str,
) -> Result<String, PrepullError> {
    let recipe = &view.recipe;
    let pipeline = &view.pipeline;
    let mut components: Vec<ComponentConfiguration> = recipe.components().to_vec();
    components[change.component_index] = ComponentConfiguration::builder()
        .component_arn(component_build_arn.as_str())
        .set_parameters(
            recipe.components()[change.component_index]
                .parameters
                .clone(),
        )
        .build()
        .map_err(|e| PrepullError::Unexpected {
            what: "ComponentConfiguration",
            detail: e.to_string(),
        })?;
    // The planned version can exist already: an earlier run made it and then failed before
    // updating the pipeline, or another writer got there first. A version that pins this
    // very build is adopted; otherwise the next patch is tried.
    let mut version =
        prepull_core::arn::parse_exact_version(&change.new_version).ok_or_else(|| {
            PrepullError::Unexpected {
                what: "CreateImageRecipe",
                detail: format!(
                    "the planned version {} is not major.minor.patch",
                    change.new_version
                ),
            }
        })?;
    let mut attempts = 0;
    let new_recipe_arn = loop {
        attempts += 1;
        let created = client
            .create_image_recipe()
            .set_name(recipe.name().map(str::to_owned))
            .set_description(recipe.description().map(str::to_owned))
            .semantic_version(version.to_string())
            .set_components(Some(components.clone()))
            .set_parent_image(recipe.parent_image().map(str::to_owned))
            .set_block_device_mappings(recipe.block_device_mappings.clone())
            .set_tags(non_empty(recipe.tags.clone()))
            .set_working_directory(recipe.working_directory().map(str::to_owned))
            .set_additional_instance_configuration(
                recipe.additional_instance_configuration().cloned(),
            )
            .set_ami_tags(non_empty(recipe.ami_tags.clone()))
            .client_token(client_token("r", &version.to_string(), manifest_hash))
            .send()
            .await;
        match created {
            Ok(created) => {
                break created
                    .image_recipe_arn()
                    .ok_or_else(|| missing("CreateImageRecipe", "imageRecipeArn"))?
                    .to_owned();
            }
            Err(error)
                if attempts < MAX_RECIPE_ATTEMPTS
                    && error
                        .as_service_error()
                        .is_some_and(aws_sdk_imagebuilder::operation::create_image_recipe::CreateImageRecipeError::is_resource_already_exists_exception) =>
            {
                let existing_arn = returned_arn(
                    "GetImageRecipe",
                    recipe.arn().ok_or_else(|| missing("GetImageRecipe", "imageRecipe.arn"))?,
                )?
                .at_version(&version)
                .to_string();
                let existing = client
                    .get_image_recipe()
                    .image_recipe_arn(&existing_arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("GetImageRecipe", e))?;
                let pins_this_build = existing
                    .image_recipe()
                    .and_then(|r| r.components().get(change.component_index))
                    .is_some_and(|c| c.component_arn() == component_build_arn.as_str());
                if pins_this_build {
                    break existing_arn;
                }
                version = prepull_core::component::next_version(Some(&version));
            }
            Err(error) => return Err(aws_error("CreateImageRecipe", error)),
        }
    };
    client
        .update_image_pipeline()
        .set_image_pipeline_arn(pipeline.arn().map(str::to_owned))
        .set_description(pipeline.description().map(str::to_owned))
        .image_recipe_arn(&new_recipe_arn)
        .set_infrastructure_configuration_arn(
            pipeline
                .infrastructure_configuration_arn()
                .map(str::to_owned),
        )
        .set_distribution_configuration_arn(
            pipeline.distribution_configuration_arn().map(str::to_owned),
        )
        .set_image_tests_configuration(pipeline.image_tests_configuration().cloned())
        .set_enhanced_image_metadata_enabled(pipeline.enhanced_image_metadata_enabled())
        .set_schedule(pipeline.schedule().cloned())
        .set_status(pipeline.status().cloned())
        .set_image_scanning_configuration(pipeline.image_scanning_configuration().cloned())
        .set_workflows(pipeline.workflows.clone())
        .set_logging_configuration(pipeline.logging_configuration().cloned())
        .set_execution_role(pipeline.execution_role().map(str::to_owned))
        .set_image_tags(non_empty(pipeline.image_tags.clone()))
        .client_token(client_token("p", &version.to_string(), manifest_hash))
        .send()
        .await
        .map_err(|e| aws_error("UpdateImagePipeline", e))?;
    Ok(new_recipe_arn)
}

/// Every image the pipeline has made, with its status and the manifest it was built for.
pub async fn list_builds(
    client: &Client,
    pipeline_arn: &str,
) -> Result<Vec<BuildSummary>, PrepullError> {
    let mut builds = Vec::new();
    let mut pages = client
        .list_image_pipeline_images()
        .image_pipeline_arn(pipeline_arn)
        .max_results(LARGEST_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ListImagePipelineImages", e))?;
        for image in page.image_summary_list() {
            builds.push(BuildSummary {
                arn: returned_arn("ListImagePipelineImages", image.arn().unwrap_or_default())?,
                status: returned_status(
                    "ListImagePipelineImages",
                    image.state().and_then(|s| s.status()),
                )?,
                manifest_hash: image.tags().and_then(|t| t.get(MANIFEST_TAG)).cloned(),
                parent_image: image.tags().and_then(|t| t.get(PARENT_IMAGE_TAG)).cloned(),
                date_created: image
                    .date_created()
                    .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                    .map(|d| d.with_timezone(&Utc)),
                component_version: image
                    .tags()
                    .and_then(|t| t.get(COMPONENT_VERSION_TAG))
                    .cloned(),
            });
        }
    }
    Ok(builds)
}

/// Starts the pipeline and returns the new image's build-version ARN.
pub async fn start_build(
    client: &Client,
    pipeline_arn: &str,
    token: &str,
    tags: &[(String, String)],
) -> Result<ImageBuilderArn, PrepullError> {
    let mut request = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(pipeline_arn)
        .client_token(token);
    for (key, value) in tags {
        request = request.tags(key, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| aws_error("StartImagePipelineExecution", e))?;
    let arn = response
        .image_build_version_arn()
        .ok_or_else(|| missing("StartImagePipelineExecution", "imageBuildVersionArn"))?;
    returned_arn("StartImagePipelineExecution", arn)
}

/// The build a component ARN (a build, a version, or a wildcard) resolves to now, and the hash
/// of the manifest its document carries; `None` when nothing matches yet.
pub async fn resolve_component(
    client: &Client,
    arn: &str,
) -> Result<Option<(ImageBuilderArn, String)>, PrepullError> {
    Ok(read_component(client, arn)
        .await?
        .map(|(arn, manifest)| (arn, manifest.hash())))
}

/// The build a component ARN resolves to, and the manifest its document carries; `None` when
/// nothing matches.
async fn read_component(
    client: &Client,
    arn: &str,
) -> Result<Option<(ImageBuilderArn, prepull_core::manifest::Manifest)>, PrepullError> {
    let response = match client
        .get_component()
        .component_build_version_arn(arn)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.meta().code() == Some("ResourceNotFoundException")) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(aws_error("GetComponent", error)),
    };
    let component = response
        .component()
        .ok_or_else(|| missing("GetComponent", "component"))?;
    let arn = component
        .arn()
        .ok_or_else(|| missing("GetComponent", "component.arn"))?;
    let data = component
        .data()
        .ok_or_else(|| missing("GetComponent", "component.data"))?;
    let (manifest, _) = document::read_manifest(data)?;
    Ok(Some((returned_arn("GetComponent", arn)?, manifest)))
}

/// Cancels a build this run started. The token follows the build, so a retry converges.
pub async fn cancel_build(client: &Client, arn: &ImageBuilderArn) -> Result<(), PrepullError> {
    let token = client_token("x", "", &prepull_core::manifest::sha256_hex(arn.as_bytes()));
    let cancelled = client
        .cancel_image_creation()
        .image_build_version_arn(arn.as_str())
        .client_token(token)
        .send()
        .await;
    match cancelled {
        Ok(_) => Ok(()),
        // The build ended meanwhile (Image Builder answers a finished image with
        // ResourceInUseException): there is nothing left to cancel.
        Err(error)
            if error.as_service_error().is_some_and(
                aws_sdk_imagebuilder::operation::cancel_image_creation::CancelImageCreationError::is_resource_in_use_exception,
            ) =>
        {
            Ok(())
        }
        Err(error) => Err(aws_error("CancelImageCreation", error)),
    }
}

/// What build-finished needs to know about one image.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    pub status: BuildStatus,
    pub pipeline: Option<String>,
    /// One AMI per distribution region and target account.
    pub amis: Vec<DistributedAmi>,
    pub manifest_hash: Option<String>,
    pub reason: Option<String>,
    /// Where the push-to-AMI latency starts (its `prepull:oldest-new-push` tag).
    pub oldest_new_push: Option<DateTime<Utc>>,
    /// The AMI's root volume in GiB, as its recipe sized the Windows root device; `None` when
    /// the recipe leaves it to the parent image.
    pub root_volume_gib: Option<i32>,
}

pub async fn get_image(client: &Client, arn: &ImageBuilderArn) -> Result<ImageFacts, PrepullError> {
    let response = client
        .get_image()
        .image_build_version_arn(arn.as_str())
        .send()
        .await
        .map_err(|e| aws_error("GetImage", e))?;
    let image = response.image.ok_or_else(|| missing("GetImage", "image"))?;
    Ok(ImageFacts {
        status: returned_status("GetImage", image.state().and_then(|s| s.status()))?,
        pipeline: image.source_pipeline_arn().map(str::to_owned),
        amis: image
            .output_resources()
            .map(|o| {
                o.amis()
                    .iter()
                    .filter_map(|a| {
                        Some(DistributedAmi {
                            region: a.region()?.to_owned(),
                            ami: a.image()?.to_owned(),
                            account: a.account_id().map(str::to_owned),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        manifest_hash: image.tags().and_then(|t| t.get(MANIFEST_TAG)).cloned(),
        reason: image.state().and_then(|s| s.reason()).map(str::to_owned),
        oldest_new_push: image
            .tags()
            .and_then(|t| t.get(OLDEST_NEW_PUSH_TAG))
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc)),
        root_volume_gib: image.image_recipe().and_then(|recipe| {
            recipe
                .block_device_mappings()
                .iter()
                .find(|m| m.device_name() == Some(WINDOWS_ROOT_DEVICE))
                .and_then(|m| m.ebs())
                .and_then(
                    aws_sdk_imagebuilder::types::EbsInstanceBlockDeviceSpecification::volume_size,
                )
        }),
    })
}
