//! Digests of watched images nobody has pushed since prepull started watching them.

use aws_sdk_ecr::types::ImageIdentifier;
use chrono::{DateTime, Utc};
use prepull_core::image::{Digest, ImageRef};
use prepull_core::manifest::Manifest;

use crate::aws::AwsClients;
use crate::aws::errors::aws_error;
use crate::error::PrepullError;

/// What ECR said about the images asked for.
#[derive(Debug, Default)]
pub struct Resolved {
    pub manifest: Manifest,
    /// Images ECR does not have (no such repository or tag): they cannot be cached yet.
    pub missing: Vec<ImageRef>,
}

/// Looks up each image's current digest with DescribeImages, in the image's own registry and
/// region. A missing repository or tag is reported, not an error: the image is simply not
/// cached until it exists.
pub async fn resolve(
    clients: &AwsClients,
    images: &[ImageRef],
    read_at: DateTime<Utc>,
) -> Result<Resolved, PrepullError> {
    let mut resolved = Resolved::default();
    for image in images {
        let client = clients.ecr_in(image.registry.region());
        let response = client
            .describe_images()
            .registry_id(image.registry.account_id())
            .repository_name(image.repository.as_str())
            .image_ids(
                ImageIdentifier::builder()
                    .image_tag(image.tag.as_str())
                    .build(),
            )
            .send()
            .await;
        let details = match response {
            Ok(response) => response.image_details,
            Err(error) => {
                let service = error.as_service_error();
                if service.is_some_and(|e| {
                    e.is_image_not_found_exception() || e.is_repository_not_found_exception()
                }) {
                    resolved.missing.push(image.clone());
                    continue;
                }
                return Err(aws_error("DescribeImages", error));
            }
        };
        let detail = details.unwrap_or_default().into_iter().next();
        let Some(detail) = detail else {
            resolved.missing.push(image.clone());
            continue;
        };
        let digest = detail.image_digest().unwrap_or_default();
        let digest = Digest::parse(digest).map_err(|e| PrepullError::Unexpected {
            what: "DescribeImages",
            detail: e.to_string(),
        })?;
        // `imagePushedAt` is when the digest was first pushed, not when the tag moved to it
        // (a retag keeps the old time); the time it was read is what is known to be current.
        resolved.manifest.pin(image.clone(), digest, Some(read_at));
    }
    Ok(resolved)
}
