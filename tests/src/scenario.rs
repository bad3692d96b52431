//! Building blocks for end-to-end scenarios: an account seeded on the bench, the shared
//! context prepull's functions would build from it, and ECR events as AWS delivers them.

use anyhow::Context as _;
use prepull::Common;
use prepull::aws::AwsClients;
use prepull::core::config::CacheConfig;
use serde_json::{Value, json};

use crate::bench::Bench;
use crate::seed::{PipelineSeed, SeededPipeline, seed_pipeline};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// A bench with ECR repositories, images and an Image Builder pipeline, and the `Common`
/// a function would build from the template's environment.
pub struct Scenario {
    pub bench: Bench,
    pub pipeline: SeededPipeline,
    pub common: Common,
    pub ecr: aws_sdk_ecr::Client,
    pub imagebuilder: aws_sdk_imagebuilder::Client,
}

impl Scenario {
    /// Seeds every repository of `images` (`repository:tag`) with one image, a pipeline
    /// shaped by `seed`, and builds the context with `settings` overriding the defaults.
    pub async fn start(
        images: &[&str],
        seed: PipelineSeed,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let bench = Bench::start().await?;
        let sdk = bench.sdk_config().await;
        let ecr = aws_sdk_ecr::Client::new(&sdk);
        let imagebuilder = aws_sdk_imagebuilder::Client::new(&sdk);
        for image in images {
            let (repository, tag) = image.split_once(':').context("images are repository:tag")?;
            ensure_repository(&ecr, repository).await?;
            push_image(&ecr, repository, tag, &format!("{image}#0")).await?;
        }
        let pipeline = seed_pipeline(&imagebuilder, &seed).await?;
        let images_setting = images.join(",");
        let mut env: Vec<(String, String)> = vec![
            ("PREPULL_PIPELINE_ARN".into(), pipeline.pipeline_arn.clone()),
            ("PREPULL_COMPONENT_NAME".into(), seed.component_name.clone()),
            ("PREPULL_IMAGES".into(), images_setting),
        ];
        env.extend(
            settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = CacheConfig::from_lookup(|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })?;
        let common = Common::new(AwsClients::from_config(&sdk), config);
        bench.emulator.clear_requests();
        Ok(Self {
            bench,
            pipeline,
            common,
            ecr,
            imagebuilder,
        })
    }

    /// Deletes `repository:tag` from ECR (moto), as a person or a lifecycle policy would.
    pub async fn delete(&self, repository: &str, tag: &str) -> anyhow::Result<()> {
        let deleted = self
            .ecr
            .batch_delete_image()
            .repository_name(repository)
            .image_ids(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_tag(tag)
                    .build(),
            )
            .send()
            .await?;
        anyhow::ensure!(
            deleted.image_ids().len() == 1,
            "{repository}:{tag} was not deleted: {:?}",
            deleted.failures()
        );
        Ok(())
    }

    /// Pushes a new image to ECR (moto) and returns its digest. Not logged as a prepull call:
    /// the log is cleared by callers that assert on it.
    pub async fn push(&self, repository: &str, tag: &str, content: &str) -> anyhow::Result<String> {
        push_image(&self.ecr, repository, tag, content).await
    }
}

/// Creates the ECR repository unless it exists.
pub async fn ensure_repository(ecr: &aws_sdk_ecr::Client, repository: &str) -> anyhow::Result<()> {
    let exists = ecr
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await
        .is_ok();
    if !exists {
        ecr.create_repository()
            .repository_name(repository)
            .send()
            .await
            .with_context(|| format!("creating the ECR repository {repository}"))?;
    }
    Ok(())
}

/// Puts an image manifest into ECR under a tag. moto derives the digest from the layers, so
/// the one layer's digest comes from `content`: different content, different digest.
pub async fn push_image(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    tag: &str,
    content: &str,
) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let config_digest: String = sha2::Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": content.len(), "digest": format!("sha256:{config_digest}")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": content.len(), "digest": format!("sha256:{config_digest}")}],
    })
    .to_string();
    let pushed = ecr
        .put_image()
        .repository_name(repository)
        .image_tag(tag)
        .image_manifest(manifest)
        .send()
        .await?;
    Ok(pushed
        .image()
        .and_then(|i| i.image_id())
        .and_then(|i| i.image_digest())
        .context("PutImage returned no digest")?
        .to_owned())
}

/// An "ECR Image Action" event exactly as EventBridge delivers it.
pub fn ecr_event(
    id: &str,
    action: &str,
    result: &str,
    repository: &str,
    tag: &str,
    digest: &str,
    time: &str,
) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": time,
        "region": REGION,
        "resources": [],
        "detail": {
            "result": result,
            "repository-name": repository,
            "image-digest": digest,
            "action-type": action,
            "image-tag": tag,
            "manifest-media-type": "application/vnd.docker.distribution.manifest.v2+json",
            "artifact-media-type": "application/vnd.docker.container.image.v1+json",
        },
    })
}

/// A successful push event.
pub fn push_event(id: &str, repository: &str, tag: &str, digest: &str, time: &str) -> Value {
    ecr_event(id, "PUSH", "SUCCESS", repository, tag, digest, time)
}

/// An SQS batch as an EventBridge→SQS target delivers it: message ids `m-0`, `m-1`, ….
pub fn sqs_batch(events: &[Value]) -> Value {
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            json!({
                "messageId": format!("m-{index}"),
                "receiptHandle": format!("handle-{index}"),
                "body": event.to_string(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1794421325000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:prepull-image-pushed"),
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({"Records": records})
}
