//! What every function holds for its lifetime: the AWS clients and the validated
//! configuration, built once at init and borrowed by each invocation.

use crate::aws::AwsClients;
use crate::config::CacheConfig;
use crate::error::PrepullError;

#[derive(Debug, Clone)]
pub struct Common {
    pub clients: AwsClients,
    pub config: CacheConfig,
}

impl Common {
    /// Reads the configuration first, so a bad setting stops init before any client exists.
    pub async fn from_env() -> Result<Self, PrepullError> {
        let config = CacheConfig::from_env()?;
        Ok(Self {
            clients: AwsClients::from_env().await,
            config,
        })
    }
}

/// Starts a function: JSON logging, then the validated configuration and the clients. A
/// bad setting is logged and stops init with a message naming the variable.
pub async fn init() -> Result<Common, PrepullError> {
    init_logging();
    Common::from_env()
        .await
        .inspect_err(|error| tracing::error!(error = %error, "init failed"))
}

/// Checks a function's own settings the way [`init`] checks the common ones: a bad value is
/// logged and stops init.
pub fn init_settings<T>(
    settings: Result<T, crate::config::ConfigError>,
) -> Result<T, PrepullError> {
    settings
        .map_err(PrepullError::from)
        .inspect_err(|error| tracing::error!(error = %error, "init failed"))
}

/// JSON logs, one object a line, as Lambda's JSON log format expects. `RUST_LOG` (or
/// `AWS_LAMBDA_LOG_LEVEL`, which Lambda sets from the function's logging config) picks the
/// level; the default is `info`.
pub fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
