//! The whole local AWS bench: the emulator in front, moto behind it.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::sync::{Mutex, MutexGuard};

use crate::emulator::{Emulator, EmulatorConfig};
use crate::moto::{self, MotoServer};

/// Credentials the bench accepts. moto and the emulator check signatures' shape, not keys. The
/// secret is distinctive so a test can show it is never printed.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "prepull-bench-secret-never-printed";

/// The environment that points any AWS SDK, boto3 or the AWS CLI at a bench whose emulator
/// listens on `url`. Every service goes through the emulator, which passes SSM, ECR and EC2
/// on to moto.
pub fn environment(url: &str, config: &EmulatorConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        "AWS_ENDPOINT_URL_IMAGEBUILDER",
        "AWS_ENDPOINT_URL_AUTO_SCALING",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_EC2",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), url.to_owned()))
    .collect();
    env.extend([
        ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY_ID.to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            SECRET_ACCESS_KEY.to_owned(),
        ),
        ("AWS_REGION".to_owned(), config.region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), config.region.clone()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("PREPULL_BENCH_URL".to_owned(), url.to_owned()),
    ]);
    env
}

/// An emulator of its own plus the process's moto, reset, for one test.
///
/// Tests that hold a bench take turns: moto is shared, and resetting it under another test
/// would pull its state away.
pub struct Bench {
    pub emulator: Emulator,
    pub moto: &'static MotoServer,
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::const_new(());

impl Bench {
    pub async fn start() -> anyhow::Result<Self> {
        let turn = TURN.lock().await;
        let moto = tokio::task::spawn_blocking(moto::shared).await??;
        moto.reset().await?;
        let config = EmulatorConfig {
            moto_url: Some(moto.url().to_owned()),
            ..EmulatorConfig::default()
        };
        let emulator = Emulator::start(config).await?;
        Ok(Self {
            emulator,
            moto,
            _turn: turn,
        })
    }

    pub fn url(&self) -> String {
        self.emulator.url()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        environment(&self.url(), self.emulator.config())
    }

    /// An SDK configuration for the bench, with the SDK's standard retry behaviour.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.url(), &self.emulator.config().region).await
    }
}

/// The SDK configuration `aws_config` would load from [`environment`]: every service at `url`.
pub async fn sdk_config_for(url: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(prepull::aws::https_client())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "prepull-bench",
        ))
        .endpoint_url(url)
        .load()
        .await
}

/// Waits for the next whole second. Auto Scaling's times are whole seconds, so a refresh and a
/// publish in the same second cannot be ordered, and prepull takes such a refresh as its own
/// (see `prepull_core::refresh::decide_refresh`). Real builds are minutes apart; the bench's
/// are not, so a story that publishes again after a rollout waits for the clock to move on.
pub async fn until_next_second() {
    let into_second = chrono::Utc::now().timestamp_subsec_millis().min(999);
    tokio::time::sleep(std::time::Duration::from_millis(u64::from(
        1000 - into_second,
    )))
    .await;
}
