//! Digests of watched images nobody has pushed since prepull started watching them.

use aws_sdk_ecr::types::ImageIdentifier;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
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

/// How many DescribeImages calls are in flight at once. Each is a round trip; ECR's
/// DescribeImages quota is per account and region ("Amazon ECR service quotas": 10 per second
/// sustained, higher bursts), and the SDK's standard retry backs off if a burst is throttled.
const CONCURRENT_LOOKUPS: usize = 8;

/// Looks up each image's current digest with DescribeImages, in the image's own registry and
/// region, several at a time. A missing repository or tag is reported, not an error: the
/// image is simply not cached until it exists.
pub async fn resolve(
    clients: &AwsClients,
    images: &[ImageRef],
    read_at: DateTime<Utc>,
) -> Result<Resolved, PrepullError> {
    let lookups: Vec<Option<Digest>> = stream::iter(images)
        .map(|image| current_digest(clients, image))
        .buffered(CONCURRENT_LOOKUPS)
        .try_collect()
        .await?;
    let mut resolved = Resolved::default();
    for (image, digest) in images.iter().zip(lookups) {
        match digest {
            // `imagePushedAt` is when the digest was first pushed, not when the tag moved to
            // it (a retag keeps the old time); the time it was read is what is known to be
            // current.
            Some(digest) => {
                resolved.manifest.pin(image.clone(), digest, Some(read_at));
            }
            None => resolved.missing.push(image.clone()),
        }
    }
    Ok(resolved)
}

/// Each image's current digest, several at a time, each with its own result: one failed
/// lookup does not hide the others (the status report shows them one by one).
pub async fn current_digests(
    clients: &AwsClients,
    images: &[ImageRef],
) -> Vec<Result<Option<Digest>, PrepullError>> {
    stream::iter(images)
        .map(|image| current_digest(clients, image))
        .buffered(CONCURRENT_LOOKUPS)
        .collect()
        .await
}

/// The digest `image`'s tag points at now; `None` when ECR has no such repository or tag.
async fn current_digest(
    clients: &AwsClients,
    image: &ImageRef,
) -> Result<Option<Digest>, PrepullError> {
    let wanted = ImageIdentifier::builder()
        .image_tag(image.tag.as_str())
        .build();
    let Some(digest) = describe_one(clients, image, wanted).await? else {
        return Ok(None);
    };
    Digest::parse(&digest)
        .map(Some)
        .map_err(|e| PrepullError::Unexpected {
            what: "DescribeImages",
            detail: e.to_string(),
        })
}

/// DescribeImages for one image of `image`'s repository, in its own registry and region: the
/// digest ECR answers with, or `None` when it has no such repository or image.
async fn describe_one(
    clients: &AwsClients,
    image: &ImageRef,
    wanted: ImageIdentifier,
) -> Result<Option<String>, PrepullError> {
    let response = clients
        .ecr_in(image.registry.region())
        .describe_images()
        .registry_id(image.registry.account_id())
        .repository_name(image.repository.as_str())
        .image_ids(wanted)
        .send()
        .await;
    match response {
        Ok(response) => Ok(response
            .image_details()
            .first()
            .and_then(|d| d.image_digest())
            .map(str::to_owned)),
        Err(error)
            if error.as_service_error().is_some_and(|e| {
                e.is_image_not_found_exception() || e.is_repository_not_found_exception()
            }) =>
        {
            Ok(None)
        }
        Err(error) => Err(aws_error("DescribeImages", error)),
    }
}

/// The images whose pinned digest ECR no longer has (the image was deleted, or its repository
/// was), looked up by digest in each image's own registry, several at a time. A digest that
/// lost its tag but is still stored is there: building it works, and the next reconcile moves
/// the pin to what the tag names.
pub async fn missing_digests(
    clients: &AwsClients,
    pins: &[(ImageRef, Digest)],
) -> Result<Vec<ImageRef>, PrepullError> {
    let found: Vec<bool> = stream::iter(pins)
        .map(|(image, digest)| digest_exists(clients, image, digest))
        .buffered(CONCURRENT_LOOKUPS)
        .try_collect()
        .await?;
    Ok(pins
        .iter()
        .zip(found)
        .filter(|(_, found)| !found)
        .map(|((image, _), _)| image.clone())
        .collect())
}

async fn digest_exists(
    clients: &AwsClients,
    image: &ImageRef,
    digest: &Digest,
) -> Result<bool, PrepullError> {
    let wanted = ImageIdentifier::builder()
        .image_digest(digest.as_str())
        .build();
    Ok(describe_one(clients, image, wanted).await?.as_deref() == Some(digest.as_str()))
}
