//! What every function holds for its lifetime: the AWS clients, the validated configuration
//! and the clock, built once at init and borrowed by each invocation.

use std::sync::Arc;

use prepull_core::clock::{Clock, SystemClock};
use prepull_core::config::{CacheConfig, ConfigError};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::aws::AwsClients;
use crate::error::PrepullError;

#[derive(Debug, Clone)]
pub struct Common {
    pub clients: AwsClients,
    pub config: CacheConfig,
    /// Every decision that reads the time reads it here.
    pub clock: Arc<dyn Clock>,
}

impl Common {
    /// A context on the system clock.
    pub fn new(clients: AwsClients, config: CacheConfig) -> Self {
        Self {
            clients,
            config,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads the configuration first, so a bad setting stops init before any client exists.
    pub async fn from_env() -> Result<Self, PrepullError> {
        let config = CacheConfig::from_env()?;
        Ok(Self::new(AwsClients::from_env().await, config))
    }
}

/// Starts a function: JSON logging, then the validated configuration and the clients, then
/// the metrics recorder. A bad setting is logged and stops init with a message naming the
/// variable.
pub async fn init() -> Result<Common, PrepullError> {
    init_logging();
    let common = Common::from_env()
        .await
        .inspect_err(|error| tracing::error!(error = %error, "init failed"))?;
    crate::metrics::init(
        &crate::metrics::function_name(),
        common.config.pipeline.name(),
    );
    Ok(common)
}

/// Checks a function's own settings the way [`init`] checks the common ones: a bad value is
/// logged and stops init.
pub fn init_settings<T>(settings: Result<T, ConfigError>) -> Result<T, PrepullError> {
    settings
        .map_err(PrepullError::from)
        .inspect_err(|error| tracing::error!(error = %error, "init failed"))
}

/// JSON logs, one object a line, as Lambda's JSON log format expects. `RUST_LOG` (or
/// `AWS_LAMBDA_LOG_LEVEL`, which Lambda sets from the function's logging config) picks the
/// level, and optionally levels per target (`info,aws_smithy_runtime=debug`); the default is
/// `info`. An unreadable filter falls back to `info` and says so.
pub fn init_logging() {
    let wanted = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".to_owned());
    let (filter, unreadable) = match wanted.parse::<Targets>() {
        Ok(filter) => (filter, None),
        Err(error) => (Targets::new().with_default(LevelFilter::INFO), Some(error)),
    };
    // A second call (tests start several functions in one process) keeps the first
    // subscriber, which is what it should do.
    let _already_set = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .with_target(false)
                .without_time(),
        )
        .with(filter)
        .try_init();
    if let Some(error) = unreadable {
        tracing::warn!(filter = %wanted, %error, "the log filter is unreadable; logging at info");
    }
}
