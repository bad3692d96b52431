//! The AWS SDK clients prepull talks through.
//!
//! Every client is built from one [`aws_config::SdkConfig`] loaded with
//! [`aws_config::defaults`], so the SDK's standard settings apply unchanged: credentials,
//! region, retry mode, and the endpoint variables `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>` (`_IMAGEBUILDER`, `_AUTO_SCALING`, `_SSM`, `_ECR`, `_EC2`). The
//! endpoint variables are how the local bench under `tests/` is reached; there is deliberately
//! no private override.
//!
//! The one HTTP client is [`https_client`]: the workspace turns the SDK's default features off
//! (see the root `Cargo.toml`), so nothing else brings one.
//!
//! Clients for other regions (SSM in each distribution region, ECR in each image's registry
//! region) are made on first use and kept, so a warm function reuses their connections.

pub mod autoscaling;
pub mod ec2;
pub mod ecr;
pub mod errors;
pub mod imagebuilder;
pub mod ssm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};

/// One client per AWS service prepull uses, each built on first use and kept for the
/// function's lifetime: init builds only the configuration, and a function never pays for a
/// client it does not use (image-pushed never calls Auto Scaling).
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The configuration the clients are built from.
    pub config: SdkConfig,
    imagebuilder: OnceLock<aws_sdk_imagebuilder::Client>,
    autoscaling: OnceLock<aws_sdk_autoscaling::Client>,
    ssm: OnceLock<aws_sdk_ssm::Client>,
    ecr: OnceLock<aws_sdk_ecr::Client>,
    ec2: OnceLock<ec2::Ec2>,
    regional_ssm: Regional<aws_sdk_ssm::Client>,
    regional_ecr: Regional<aws_sdk_ecr::Client>,
}

/// The HTTP client every SDK client shares: hyper 1 with rustls on `ring` and the system's
/// root certificates (read once, on first use). `ring` rather than the SDK's default
/// `aws-lc-rs`: the same TLS 1.2/1.3 suites AWS endpoints offer, without a C library that
/// takes minutes to cross-compile for arm64 (measured in `docs/measuring.md`). Plain `http://`
/// endpoints (the local bench) work through it too.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Clients of one service by region, each made once.
type Regional<C> = Arc<Mutex<HashMap<String, C>>>;

fn regional<C: Clone>(
    cache: &Regional<C>,
    home: &C,
    home_region: Option<&Region>,
    region: &str,
    make: impl FnOnce() -> C,
) -> C {
    if home_region.is_some_and(|r| r.as_ref() == region) {
        return home.clone();
    }
    // A poisoned lock only means another thread panicked while inserting a client; the map
    // itself is still a valid cache.
    let mut clients = cache.lock().unwrap_or_else(PoisonError::into_inner);
    clients
        .entry(region.to_owned())
        .or_insert_with(make)
        .clone()
}

impl AwsClients {
    /// Loads the SDK configuration from the environment and builds every client from it.
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        Self::from_config(&config)
    }

    /// The clients of an already loaded configuration, each built on first use.
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            config: config.clone(),
            imagebuilder: OnceLock::new(),
            autoscaling: OnceLock::new(),
            ssm: OnceLock::new(),
            ecr: OnceLock::new(),
            ec2: OnceLock::new(),
            regional_ssm: Arc::default(),
            regional_ecr: Arc::default(),
        }
    }

    pub fn imagebuilder(&self) -> &aws_sdk_imagebuilder::Client {
        self.imagebuilder.get_or_init(|| {
            aws_sdk_imagebuilder::Client::from_conf(
                aws_sdk_imagebuilder::config::Builder::from(&self.config)
                    .retry_classifier(ImageBuilderRateLimit)
                    .build(),
            )
        })
    }

    pub fn autoscaling(&self) -> &aws_sdk_autoscaling::Client {
        self.autoscaling
            .get_or_init(|| aws_sdk_autoscaling::Client::new(&self.config))
    }

    /// The SSM client of the home region.
    pub fn ssm(&self) -> &aws_sdk_ssm::Client {
        self.ssm
            .get_or_init(|| aws_sdk_ssm::Client::new(&self.config))
    }

    /// The ECR client of the home region.
    pub fn ecr(&self) -> &aws_sdk_ecr::Client {
        self.ecr
            .get_or_init(|| aws_sdk_ecr::Client::new(&self.config))
    }

    /// EC2 in the home region: the one launch template read (see [`ec2`]).
    pub fn ec2(&self) -> &ec2::Ec2 {
        self.ec2.get_or_init(|| ec2::Ec2::new(&self.config))
    }

    /// The SSM client for `region`: the home client there, else one made once and kept.
    pub fn ssm_in(&self, region: &str) -> aws_sdk_ssm::Client {
        regional(
            &self.regional_ssm,
            self.ssm(),
            self.config.region(),
            region,
            || {
                aws_sdk_ssm::Client::from_conf(
                    aws_sdk_ssm::config::Builder::from(&self.config)
                        .region(Region::new(region.to_owned()))
                        .build(),
                )
            },
        )
    }

    /// The ECR client for `region`: the home client there, else one made once and kept.
    pub fn ecr_in(&self, region: &str) -> aws_sdk_ecr::Client {
        regional(
            &self.regional_ecr,
            self.ecr(),
            self.config.region(),
            region,
            || {
                aws_sdk_ecr::Client::from_conf(
                    aws_sdk_ecr::config::Builder::from(&self.config)
                        .region(Region::new(region.to_owned()))
                        .build(),
                )
            },
        )
    }
}

/// Image Builder throttles with `CallRateLimitExceededException` (HTTP 429), a code the SDK's
/// standard classifier does not know. This makes the SDK back off and retry it like any other
/// throttling error, within the standard retry configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBuilderRateLimit;

const RATE_LIMIT_CODE: &str = "CallRateLimitExceededException";

impl ClassifyRetry for ImageBuilderRateLimit {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        let by_header = response
            .headers()
            .get("x-amzn-errortype")
            .is_some_and(|code| code.split(':').next() == Some(RATE_LIMIT_CODE));
        let by_body = response.body().bytes().is_some_and(|body| {
            response.status().as_u16() == 429
                && String::from_utf8_lossy(body).contains(RATE_LIMIT_CODE)
        });
        if by_header || by_body {
            RetryAction::throttling_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "Image Builder CallRateLimitExceededException"
    }
}
