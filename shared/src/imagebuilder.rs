//! Image Builder reads and writes, each one AWS call or one paginated listing. Decisions are
//! made in [`crate::plan`]; these functions only carry them out.

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{
    ComponentConfiguration, Filter, ImagePipeline, ImageRecipe, Ownership, Platform,
};
use chrono::{DateTime, Utc};
use semver::Version;
use serde::Serialize;

use crate::document;
use crate::error::{PrepullError, aws_error};
use crate::plan::{
    BuildSummary, ComponentPlan, ComponentState, MANIFEST_TAG, PARENT_IMAGE_TAG, RecipeReference,
    client_token, recipe_reference,
};

fn build_number(arn: &str) -> u64 {
    arn.rsplit('/')
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0)
}

/// How many recipe versions are tried when the planned one exists already.
const MAX_RECIPE_ATTEMPTS: u32 = 5;

/// How many versions beyond what ListComponents reports are probed for.
const MAX_PROBED_VERSIONS: usize = 10;

/// Every build-version ARN of one component version; none if the version does not exist.
async fn list_build_arns(client: &Client, version_arn: &str) -> Result<Vec<String>, PrepullError> {
    let mut arns = Vec::new();
    let mut pages = client
        .list_component_build_versions()
        .component_version_arn(version_arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => arns.extend(
                page.component_summary_list()
                    .iter()
                    .filter_map(|s| s.arn())
                    .map(str::to_owned),
            ),
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

/// Reads the cache component: its highest version, and every build of that version.
pub async fn read_component_state(
    client: &Client,
    component_name: &str,
) -> Result<ComponentState, PrepullError> {
    let mut versions: Vec<(Version, String)> = Vec::new();
    let mut pages = client
        .list_components()
        .owner(Ownership::SelfValue)
        .filters(
            Filter::builder()
                .name("name")
                .values(component_name)
                .build(),
        )
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
            if let Ok(version) = Version::parse(version) {
                versions.push((version, arn.to_owned()));
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
        let next = Version::new(
            latest_version.major,
            latest_version.minor,
            latest_version.patch + 1,
        );
        let next_arn = format!(
            "{}/{next}",
            version_arn
                .rsplit_once('/')
                .map_or(version_arn.as_str(), |(base, _)| base)
        );
        let next_builds = list_build_arns(client, &next_arn).await?;
        if next_builds.is_empty() {
            break;
        }
        (latest_version, version_arn, build_arns) = (next, next_arn, next_builds);
    }
    build_arns.sort_by_key(|arn| build_number(arn));

    let mut state = ComponentState {
        latest_version: Some(latest_version.clone()),
        ..ComponentState::default()
    };
    for arn in &build_arns {
        let response = client
            .get_component()
            .component_build_version_arn(arn)
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

/// Creates a component version and returns its build-version ARN.
pub async fn create_component(
    client: &Client,
    component_name: &str,
    plan: &ComponentPlan,
) -> Result<String, PrepullError> {
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
        .await
        .map_err(|e| aws_error("CreateComponent", e))?;
    response
        .component_build_version_arn()
        .map(str::to_owned)
        .ok_or_else(|| PrepullError::Unexpected {
            what: "CreateComponent",
            detail: "the response has no componentBuildVersionArn".to_owned(),
        })
}

/// Whether the ARN is the first build of its version, i.e. no concurrent writer made the
/// same version first.
pub fn is_first_build(component_build_arn: &str) -> bool {
    build_number(component_build_arn) == 1
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
        .ok_or_else(|| PrepullError::Unexpected {
            what: "GetImagePipeline",
            detail: "no imagePipeline in the response".to_owned(),
        })?;
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
        .ok_or_else(|| PrepullError::Unexpected {
            what: "GetImageRecipe",
            detail: "no imageRecipe in the response".to_owned(),
        })?;
    Ok(PipelineView { pipeline, recipe })
}

/// A new recipe version that pins a new component build, and the pipeline pointed at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipeChange {
    pub recipe_name: String,
    pub from_version: String,
    pub new_version: String,
    #[serde(skip)]
    component_index: usize,
}

/// Whether the recipe needs a new version to use `component_build_arn`: only when it pins
/// the component to another build. A recipe without the component is a setup error.
pub fn plan_recipe(
    view: &PipelineView,
    component_name: &str,
    component_build_arn: &str,
) -> Result<Option<RecipeChange>, PrepullError> {
    let arns: Vec<&str> = view
        .recipe
        .components()
        .iter()
        .map(|c| c.component_arn())
        .collect();
    let component_index = match recipe_reference(&arns, component_name) {
        Some(RecipeReference::Wildcard) => return Ok(None),
        Some(RecipeReference::Pinned { index }) if arns[index] == component_build_arn => {
            return Ok(None);
        }
        Some(RecipeReference::Pinned { index }) => index,
        None => {
            return Err(PrepullError::ComponentNotInRecipe {
                pipeline: view.pipeline.arn().unwrap_or_default().to_owned(),
                recipe: view.recipe.arn().unwrap_or_default().to_owned(),
                component: component_name.to_owned(),
            });
        }
    };
    let from_version = view.recipe.version().unwrap_or("1.0.0").to_owned();
    let current = Version::parse(&from_version).unwrap_or_else(|_| Version::new(1, 0, 0));
    let new_version = Version::new(current.major, current.minor, current.patch + 1).to_string();
    Ok(Some(RecipeChange {
        recipe_name: view.recipe.name().unwrap_or_default().to_owned(),
        from_version,
        new_version,
        component_index,
    }))
}

/// Creates the new recipe version, copying every field of the current one, then updates the
/// pipeline by read-modify-write, resending every field it read. Returns the new recipe ARN.
pub async fn apply_recipe_change(
    client: &Client,
    view: &PipelineView,
    change: &RecipeChange,
    component_build_arn: &str,
    manifest_hash: &str,
) -> Result<String, PrepullError> {
    let recipe = &view.recipe;
    let pipeline = &view.pipeline;
    let mut components: Vec<ComponentConfiguration> = recipe.components().to_vec();
    components[change.component_index] = ComponentConfiguration::builder()
        .component_arn(component_build_arn)
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
    let mut version = Version::parse(&change.new_version).unwrap_or_else(|_| Version::new(1, 0, 1));
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
            .set_tags(recipe.tags.clone())
            .set_working_directory(recipe.working_directory().map(str::to_owned))
            .set_additional_instance_configuration(
                recipe.additional_instance_configuration().cloned(),
            )
            .set_ami_tags(recipe.ami_tags.clone())
            .client_token(client_token("r", &version.to_string(), manifest_hash))
            .send()
            .await;
        match created {
            Ok(created) => {
                break created
                    .image_recipe_arn()
                    .ok_or_else(|| PrepullError::Unexpected {
                        what: "CreateImageRecipe",
                        detail: "no imageRecipeArn in the response".to_owned(),
                    })?
                    .to_owned();
            }
            Err(error)
                if attempts < MAX_RECIPE_ATTEMPTS
                    && error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_already_exists_exception()) =>
            {
                let existing_arn = format!(
                    "{}/{version}",
                    recipe
                        .arn()
                        .unwrap_or_default()
                        .rsplit_once('/')
                        .map_or("", |(base, _)| base)
                );
                let existing = client
                    .get_image_recipe()
                    .image_recipe_arn(&existing_arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("GetImageRecipe", e))?;
                let pins_this_build = existing
                    .image_recipe()
                    .and_then(|r| r.components().get(change.component_index))
                    .is_some_and(|c| c.component_arn() == component_build_arn);
                if pins_this_build {
                    break existing_arn;
                }
                version = Version::new(version.major, version.minor, version.patch + 1);
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
        .set_image_tags(pipeline.image_tags.clone())
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
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ListImagePipelineImages", e))?;
        for image in page.image_summary_list() {
            builds.push(BuildSummary {
                arn: image.arn().unwrap_or_default().to_owned(),
                status: image
                    .state()
                    .and_then(|s| s.status())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                manifest_hash: image.tags().and_then(|t| t.get(MANIFEST_TAG)).cloned(),
                parent_image: image.tags().and_then(|t| t.get(PARENT_IMAGE_TAG)).cloned(),
                date_created: image
                    .date_created()
                    .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                    .map(|d| d.with_timezone(&Utc)),
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
) -> Result<String, PrepullError> {
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
    response
        .image_build_version_arn()
        .map(str::to_owned)
        .ok_or_else(|| PrepullError::Unexpected {
            what: "StartImagePipelineExecution",
            detail: "no imageBuildVersionArn in the response".to_owned(),
        })
}
