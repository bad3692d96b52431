//! ECR reads: where watched tags point and whether pinned digests still exist, one
//! `BatchGetImage` per repository (see [`prepull_core::registry`]).

use aws_sdk_ecr::operation::batch_get_image::BatchGetImageError;
use aws_sdk_ecr::types::{ImageFailureCode, ImageIdentifier};
use futures_util::{StreamExt as _, stream};
use prepull_core::image::{Digest, ImageRef, Tag};
use prepull_core::registry::{BatchRead, EcrState, ImageId, RepositoryAnswer, RepositoryKey};

use crate::aws::AwsClients;
use crate::aws::errors::aws_error;
use crate::error::PrepullError;

/// How many repositories are read at once. Each is a round trip; ECR's `BatchGetImage` rate
/// quota is per account and region ("Amazon ECR service quotas": 2,000 per second), and the
/// SDK's standard retry backs off if a burst is throttled.
const CONCURRENT_READS: usize = 8;

/// Reads into `state` whatever `tags` and `digests` ask that it does not know yet: one call
/// per repository, several repositories at once. The first failed read fails the whole.
pub async fn read_into(
    clients: &AwsClients,
    state: &mut EcrState,
    tags: &[ImageRef],
    digests: &[(ImageRef, Digest)],
) -> Result<(), PrepullError> {
    for (read, answer) in read_each(clients, state.reads_for(tags, digests)).await {
        state.record(&read, &answer?);
    }
    Ok(())
}

/// A fresh read of `tags` and `digests`.
pub async fn read(
    clients: &AwsClients,
    tags: &[ImageRef],
    digests: &[(ImageRef, Digest)],
) -> Result<EcrState, PrepullError> {
    let mut state = EcrState::default();
    read_into(clients, &mut state, tags, digests).await?;
    Ok(state)
}

/// Each watched image's current digest, with each repository's read failing on its own: one
/// failed read does not hide the other repositories' images (the status report shows them one
/// by one, each with its repository's error as text).
pub async fn current_digests(
    clients: &AwsClients,
    images: &[ImageRef],
) -> Vec<Result<Option<Digest>, String>> {
    let mut state = EcrState::default();
    let mut failed: Vec<(RepositoryKey, PrepullError)> = Vec::new();
    for (read, answer) in read_each(clients, state.reads_for(images, &[])).await {
        match answer {
            Ok(answer) => state.record(&read, &answer),
            Err(error) => failed.push((read.repository, error)),
        }
    }
    images
        .iter()
        .map(|image| {
            let key = RepositoryKey::of(image);
            match failed.iter().find(|(failed, _)| *failed == key) {
                Some((_, error)) => Err(error.to_string()),
                None => Ok(state.digest_of(image).cloned()),
            }
        })
        .collect()
}

async fn read_each(
    clients: &AwsClients,
    reads: Vec<BatchRead>,
) -> Vec<(BatchRead, Result<RepositoryAnswer, PrepullError>)> {
    stream::iter(reads)
        .map(|read| async move {
            let answer = batch_get_image(clients, &read).await;
            (read, answer)
        })
        .buffered(CONCURRENT_READS)
        .collect()
        .await
}

/// One `BatchGetImage`. A repository ECR does not have answers as having none of the images:
/// they are simply not there to cache.
async fn batch_get_image(
    clients: &AwsClients,
    read: &BatchRead,
) -> Result<RepositoryAnswer, PrepullError> {
    let ids = read.ids.iter().map(|id| match id {
        ImageId::Tag(tag) => ImageIdentifier::builder().image_tag(tag.as_str()).build(),
        ImageId::Digest(digest) => ImageIdentifier::builder()
            .image_digest(digest.as_str())
            .build(),
    });
    let response = clients
        .ecr_in(read.repository.registry.region())
        .batch_get_image()
        .registry_id(read.repository.registry.account_id())
        .repository_name(read.repository.repository.as_str())
        .set_image_ids(Some(ids.collect()))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(BatchGetImageError::is_repository_not_found_exception) =>
        {
            return Ok(RepositoryAnswer::default());
        }
        Err(error) => return Err(aws_error("BatchGetImage", error)),
    };
    // `ImageNotFound` is the answer "not there"; any other failure is not an answer at all.
    if let Some(failure) = response.failures().iter().find(|f| {
        f.failure_code()
            .is_some_and(|code| *code != ImageFailureCode::ImageNotFound)
    }) {
        let code = failure.failure_code().map(ImageFailureCode::as_str);
        return Err(PrepullError::Unexpected {
            what: "BatchGetImage",
            detail: format!(
                "{}: {} {}",
                read.repository,
                code.unwrap_or_default(),
                failure.failure_reason().unwrap_or_default()
            ),
        });
    }
    let mut answer = RepositoryAnswer::default();
    for image in response.images() {
        let Some(id) = image.image_id() else { continue };
        let Some(digest) = id.image_digest() else {
            continue;
        };
        let digest = Digest::parse(digest).map_err(|e| PrepullError::Unexpected {
            what: "BatchGetImage",
            detail: e.to_string(),
        })?;
        // A tag ECR answers that is not a valid tag was not asked for.
        if let Some(tag) = id.image_tag().and_then(|t| Tag::parse(t).ok()) {
            answer.tags.insert(tag, digest.clone());
        }
        answer.digests.insert(digest);
    }
    Ok(answer)
}
