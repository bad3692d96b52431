//! The pipeline and its recipe: read, and the recipe moved to a new component version.

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{ComponentConfiguration, ImagePipeline, ImageRecipe};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::recipe::{self, RecipeChange, RecipeFacts};
use prepull_core::token::client_token;
use semver::Version;

use crate::aws::errors::{aws_error, missing};
use crate::error::PrepullError;

use super::{non_empty, returned_arn};

/// How many recipe versions are tried when the planned one exists already.
const MAX_RECIPE_ATTEMPTS: u32 = 5;

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
    let components = swap_component(&view.recipe, change, component_build_arn)?;
    let (recipe_arn, version) = create_recipe_version(
        client,
        &view.recipe,
        change,
        components,
        component_build_arn,
        manifest_hash,
    )
    .await?;
    update_pipeline(client, &view.pipeline, &recipe_arn, &version, manifest_hash).await?;
    Ok(recipe_arn)
}

/// The recipe's components with the cache component's entry pinned to `component_build_arn`,
/// its parameters kept.
fn swap_component(
    recipe: &ImageRecipe,
    change: &RecipeChange,
    component_build_arn: &ImageBuilderArn,
) -> Result<Vec<ComponentConfiguration>, PrepullError> {
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
    Ok(components)
}

/// Creates the recipe's new version, every field copied. The planned version can exist
/// already: an earlier run made it and then failed before updating the pipeline, or another
/// writer got there first. A version that pins this very build is adopted; otherwise the next
/// patch is tried.
async fn create_recipe_version(
    client: &Client,
    recipe: &ImageRecipe,
    change: &RecipeChange,
    components: Vec<ComponentConfiguration>,
    component_build_arn: &ImageBuilderArn,
    manifest_hash: &str,
) -> Result<(String, Version), PrepullError> {
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
    loop {
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
                let arn = created
                    .image_recipe_arn()
                    .ok_or_else(|| missing("CreateImageRecipe", "imageRecipeArn"))?;
                return Ok((arn.to_owned(), version));
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
                    return Ok((existing_arn, version));
                }
                version = prepull_core::component::next_version(Some(&version));
            }
            Err(error) => return Err(aws_error("CreateImageRecipe", error)),
        }
    }
}

/// Points the pipeline at `recipe_arn`. UpdateImagePipeline replaces the whole pipeline, so
/// every field read is sent back.
async fn update_pipeline(
    client: &Client,
    pipeline: &ImagePipeline,
    recipe_arn: &str,
    version: &Version,
    manifest_hash: &str,
) -> Result<(), PrepullError> {
    client
        .update_image_pipeline()
        .set_image_pipeline_arn(pipeline.arn().map(str::to_owned))
        .set_description(pipeline.description().map(str::to_owned))
        .image_recipe_arn(recipe_arn)
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
    Ok(())
}
