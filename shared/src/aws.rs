//! The AWS SDK clients prepull talks through.
//!
//! Every client is built from one [`aws_config::SdkConfig`] loaded with
//! [`aws_config::load_defaults`], so the SDK's standard settings apply unchanged: credentials,
//! region, retry mode, and the endpoint variables `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>` (`_IMAGEBUILDER`, `_AUTO_SCALING`, `_SSM`, `_ECR`). The
//! endpoint variables are how the local bench under `tests/` is reached; there is deliberately
//! no private override.

use aws_config::{BehaviorVersion, SdkConfig};

/// One client per AWS service prepull uses, built once at init and borrowed by handlers.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The configuration the clients were built from, for clients made later (ECR in
    /// another region).
    pub config: SdkConfig,
    pub imagebuilder: aws_sdk_imagebuilder::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ecr: aws_sdk_ecr::Client,
}

impl AwsClients {
    /// Loads the SDK configuration from the environment and builds every client from it.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
        Self::from_config(&config)
    }

    /// Builds every client from an already loaded configuration.
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            config: config.clone(),
            imagebuilder: aws_sdk_imagebuilder::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            ecr: aws_sdk_ecr::Client::new(config),
        }
    }
}
