//! Sets up an account the way a user's would look, through the real APIs: a cache component,
//! a recipe, infrastructure and distribution configurations and a pipeline.

use anyhow::Context;
use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{
    AmiDistributionConfiguration, ComponentConfiguration, Distribution,
    EbsInstanceBlockDeviceSpecification, EbsVolumeType, InstanceBlockDeviceMapping, PipelineStatus,
    Platform,
};

use crate::bench::Bench;

/// The seeded recipe's root volume, as the template's `RootVolumeSize` defaults it.
pub const ROOT_VOLUME_GIB: i32 = 100;

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
        .block_device_mappings(
            InstanceBlockDeviceMapping::builder()
                .device_name(prepull::core::launch_template::WINDOWS_ROOT_DEVICE)
                .ebs(
                    EbsInstanceBlockDeviceSpecification::builder()
                        .volume_size(ROOT_VOLUME_GIB)
                        .volume_type(EbsVolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
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

/// The launch template [`seed_group`]'s groups launch from, as prepull's fleet would have it:
/// `ImageId` `resolve:ssm:<parameter>` and the recipe's root volume.
pub async fn seed_fleet_template(bench: &Bench, parameter: &str) -> anyhow::Result<()> {
    seed_launch_template(
        bench,
        FLEET_TEMPLATE,
        &format!("resolve:ssm:{parameter}"),
        Some(ROOT_VOLUME_GIB),
    )
    .await
}

/// The launch template [`seed_fleet_template`] makes.
pub const FLEET_TEMPLATE: &str = "windows-nodes";

/// An Auto Scaling group of two Windows nodes launched from [`FLEET_TEMPLATE`] (`$Latest`).
pub async fn seed_group(client: &aws_sdk_autoscaling::Client, name: &str) -> anyhow::Result<()> {
    seed_group_with_template(client, name, FLEET_TEMPLATE).await
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

/// One EC2 Query call to moto through the bench (the tests carry no EC2 SDK); returns the
/// response body.
pub async fn ec2_query(bench: &Bench, params: &[(&str, &str)]) -> anyhow::Result<String> {
    let config = bench.emulator.config();
    let mut form = vec![("Version", "2016-11-15")];
    form.extend_from_slice(params);
    let body = serde_urlencoded::to_string(&form)?;
    let date = chrono::Utc::now().format("%Y%m%d");
    let response = reqwest::Client::new()
        .post(bench.url())
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{date}/{}/ec2/aws4_request, SignedHeaders=host, Signature=0",
                crate::bench::ACCESS_KEY_ID,
                config.region
            ),
        )
        .body(body)
        .send()
        .await
        .context("EC2 query")?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("EC2 {params:?} failed ({status}): {text}");
    }
    Ok(text)
}

/// A launch template nodes launch from: `image_id` (`resolve:ssm:<parameter>` for a fleet
/// prepull can refresh) and, when given, a root volume of that size.
pub async fn seed_launch_template(
    bench: &Bench,
    name: &str,
    image_id: &str,
    root_volume_gib: Option<i32>,
) -> anyhow::Result<()> {
    let size = root_volume_gib.map(|s| s.to_string());
    let mut params = vec![
        ("Action", "CreateLaunchTemplate"),
        ("LaunchTemplateName", name),
        ("LaunchTemplateData.ImageId", image_id),
        ("LaunchTemplateData.InstanceType", "m5.xlarge"),
    ];
    if let Some(size) = &size {
        params.extend([
            (
                "LaunchTemplateData.BlockDeviceMapping.1.DeviceName",
                prepull::core::launch_template::WINDOWS_ROOT_DEVICE,
            ),
            (
                "LaunchTemplateData.BlockDeviceMapping.1.Ebs.VolumeSize",
                size,
            ),
            (
                "LaunchTemplateData.BlockDeviceMapping.1.Ebs.VolumeType",
                "gp3",
            ),
        ]);
    }
    let text = ec2_query(bench, &params).await?;
    anyhow::ensure!(text.contains(name), "CreateLaunchTemplate answered {text}");
    Ok(())
}
