//! The pipeline's builds: listed, started, cancelled, and one image read.

use aws_sdk_imagebuilder::Client;
use chrono::{DateTime, Utc};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{
    BuildStatus, BuildSummary, COMPONENT_VERSION_TAG, MANIFEST_TAG, OLDEST_NEW_PUSH_TAG,
    PARENT_IMAGE_TAG,
};
use prepull_core::launch_template::WINDOWS_ROOT_DEVICE;
use prepull_core::parameter::DistributedAmi;
use prepull_core::token::client_token;

use crate::aws::errors::{aws_error, missing};
use crate::error::PrepullError;

use super::{LARGEST_PAGE, returned_arn, returned_status};

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
