//! Sets up an account the way a user's would look, through the real APIs: a cache component,
//! a recipe, infrastructure and distribution configurations and a pipeline.

use anyhow::Context;
use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{
    AmiDistributionConfiguration, ComponentConfiguration, Distribution, PipelineStatus, Platform,
};

/// The cache component's document before prepull has written its first version.
/// The bootstrap version's document, as the template writes it (less its comment lines).
pub const EMPTY_CACHE_DOCUMENT: &str = "name: prepull-cache\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: PullCachedImages\n        action: ExecutePowerShell\n        inputs:\n          commands:\n            - \"Write-Output 'prepull: no images to cache yet'\"\n";

/// How the seeded recipe references the cache component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentReference {
    /// `.../component/NAME/x.x.x`: every build takes the latest version.
    Wildcard,
    /// `.../component/NAME/1.0.0/1`: a new version needs a new recipe version.
    Pinned,
}

#[derive(Debug, Clone)]
pub struct PipelineSeed {
    pub name: String,
    pub component_name: String,
    pub reference: ComponentReference,
    pub regions: Vec<String>,
    pub parent_image: String,
    /// Accounts the AMIs are distributed to besides this one (`targetAccountIds`).
    pub target_accounts: Vec<String>,
}

impl Default for PipelineSeed {
    fn default() -> Self {
        Self {
            name: "prepull-windows-cache".to_owned(),
            component_name: "prepull-cache".to_owned(),
            reference: ComponentReference::Wildcard,
            regions: vec!["us-east-1".to_owned()],
            parent_image: "ssm:/aws/service/ami-windows-latest/Windows_Server-2022-English-Core-EKS_Optimized-1.33/image_id".to_owned(),
            target_accounts: Vec::new(),
        }
    }
}

/// The ARNs of what [`seed_pipeline`] made.
#[derive(Debug, Clone)]
pub struct SeededPipeline {
    pub pipeline_arn: String,
    pub recipe_arn: String,
    pub component_build_arn: String,
    pub infrastructure_arn: String,
    pub distribution_arn: String,
}

pub async fn seed_pipeline(client: &Client, seed: &PipelineSeed) -> anyhow::Result<SeededPipeline> {
    let component = client
        .create_component()
        .name(&seed.component_name)
        .semantic_version("1.0.0")
        .platform(Platform::Windows)
        .description("prepull image cache (bootstrap: no images yet)")
        .data(EMPTY_CACHE_DOCUMENT)
        .send()
        .await
        .context("CreateComponent")?;
    let component_build_arn = component
        .component_build_version_arn()
        .context("no component ARN")?
        .to_owned();
    let cache_reference = match seed.reference {
        ComponentReference::Pinned => component_build_arn.clone(),
        ComponentReference::Wildcard => {
            let version_arn = component_build_arn
                .rsplitn(3, '/')
                .nth(2)
                .context("component ARN shape")?;
            format!("{version_arn}/x.x.x")
        }
    };
    let update_windows = component_build_arn
        .split(':')
        .take(4)
        .collect::<Vec<_>>()
        .join(":")
        + ":aws:component/update-windows/x.x.x";
    let recipe = client
        .create_image_recipe()
        .name(format!("{}-recipe", seed.name))
        .semantic_version("1.0.0")
        .parent_image(&seed.parent_image)
        .description("Windows container host with prepull's image cache")
        .components(
            ComponentConfiguration::builder()
                .component_arn(update_windows)
                .build()?,
        )
        .components(
            ComponentConfiguration::builder()
                .component_arn(cache_reference)
                .build()?,
        )
        .working_directory("C:\\")
        .send()
        .await
        .context("CreateImageRecipe")?;
    let recipe_arn = recipe
        .image_recipe_arn()
        .context("no recipe ARN")?
        .to_owned();
    let infrastructure = client
        .create_infrastructure_configuration()
        .name(format!("{}-infrastructure", seed.name))
        .instance_profile_name("prepull-image-builder")
        .instance_types("m5.xlarge")
        .terminate_instance_on_failure(true)
        .send()
        .await
        .context("CreateInfrastructureConfiguration")?;
    let infrastructure_arn = infrastructure
        .infrastructure_configuration_arn()
        .context("no infrastructure ARN")?
        .to_owned();
    let mut distribution = client
        .create_distribution_configuration()
        .name(format!("{}-distribution", seed.name));
    for region in &seed.regions {
        distribution = distribution.distributions(
            Distribution::builder()
                .region(region)
                .ami_distribution_configuration(
                    AmiDistributionConfiguration::builder()
                        .name("prepull-windows-{{imagebuilder:buildDate}}")
                        .description("prepull cached Windows container host")
                        .set_target_account_ids(
                            (!seed.target_accounts.is_empty())
                                .then(|| seed.target_accounts.clone()),
                        )
                        .build(),
                )
                .build()?,
        );
    }
    let distribution = distribution
        .send()
        .await
        .context("CreateDistributionConfiguration")?;
    let distribution_arn = distribution
        .distribution_configuration_arn()
        .context("no distribution ARN")?
        .to_owned();
    let pipeline = client
        .create_image_pipeline()
        .name(&seed.name)
        .description("Driven by prepull; no schedule of its own")
        .image_recipe_arn(&recipe_arn)
        .infrastructure_configuration_arn(&infrastructure_arn)
        .distribution_configuration_arn(&distribution_arn)
        .status(PipelineStatus::Enabled)
        .send()
        .await
        .context("CreateImagePipeline")?;
    let pipeline_arn = pipeline
        .image_pipeline_arn()
        .context("no pipeline ARN")?
        .to_owned();
    Ok(SeededPipeline {
        pipeline_arn,
        recipe_arn,
        component_build_arn,
        infrastructure_arn,
        distribution_arn,
    })
}

/// An Auto Scaling group of two Windows nodes whose launch template resolves the AMI
/// parameter at launch, as prepull's fleet would look.
pub async fn seed_group(client: &aws_sdk_autoscaling::Client, name: &str) -> anyhow::Result<()> {
    seed_group_with_template(client, name, "windows-nodes").await
}

/// An Auto Scaling group of two nodes launched from `launch_template` (`$Latest`).
pub async fn seed_group_with_template(
    client: &aws_sdk_autoscaling::Client,
    name: &str,
    launch_template: &str,
) -> anyhow::Result<()> {
    client
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name(launch_template)
                .version("$Latest")
                .build(),
        )
        .min_size(1)
        .max_size(4)
        .desired_capacity(2)
        .send()
        .await
        .context("CreateAutoScalingGroup")?;
    Ok(())
}
