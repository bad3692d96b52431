//! prepull's errors. Each says what failed and whether trying again can help, which decides
//! whether a function fails its invocation (so Lambda or SQS retries) or reports and moves on.

use aws_sdk_imagebuilder::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::config::ConfigError;
use crate::document::DocumentError;

/// AWS error codes that mean "try again later", beyond 5xx. Image Builder throttles with
/// `CallRateLimitExceededException`, which the SDK does not retry; SSM answers concurrent
/// writes to one parameter with `TooManyUpdates`.
const RETRYABLE_CODES: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "CallRateLimitExceededException",
    "RequestLimitExceeded",
    "TooManyUpdates",
];

#[derive(Debug, thiserror::Error)]
pub enum PrepullError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("{operation} failed{}: {message}", code.as_deref().map(|c| format!(" with {c}")).unwrap_or_default())]
    Aws {
        operation: &'static str,
        code: Option<String>,
        message: String,
        retryable: bool,
    },
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(
        "the recipe {recipe} of pipeline {pipeline} does not use the cache component {component}"
    )]
    ComponentNotInRecipe {
        pipeline: String,
        recipe: String,
        component: String,
    },
    #[error("{what}: {detail}")]
    Unexpected { what: &'static str, detail: String },
    #[error("gave up after {attempts} attempts: {what} kept changing under concurrent writers")]
    Contention { what: &'static str, attempts: u32 },
}

impl PrepullError {
    /// Whether the same request may succeed later: throttling, 5xx, timeouts, contention.
    pub fn is_retryable(&self) -> bool {
        match self {
            PrepullError::Aws { retryable, .. } => *retryable,
            PrepullError::Contention { .. } => true,
            _ => false,
        }
    }

    /// A short type name for the Lambda error report.
    pub fn kind(&self) -> &'static str {
        match self {
            PrepullError::Config(_) => "prepull.Config",
            PrepullError::InvalidInput(_) => "prepull.InvalidInput",
            PrepullError::Aws {
                retryable: true, ..
            } => "prepull.AwsTransient",
            PrepullError::Aws { .. } => "prepull.Aws",
            PrepullError::Document(_) => "prepull.Document",
            PrepullError::ComponentNotInRecipe { .. } => "prepull.Recipe",
            PrepullError::Unexpected { .. } => "prepull.Unexpected",
            PrepullError::Contention { .. } => "prepull.Contention",
        }
    }
}

/// Classifies an SDK error from any of the service clients.
pub fn aws_error<E>(operation: &'static str, error: SdkError<E, Response>) -> PrepullError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, retryable) = match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            let throttled = code
                .as_deref()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c));
            (code, throttled || service.raw().status().is_server_error())
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (None, true)
        }
        _ => (None, false),
    };
    // A service's own message says what went wrong; the SDK's full context (raw response,
    // headers) is only worth its length when there is no service error to show.
    let message = match &error {
        SdkError::ServiceError(service) => service.err().message().map(str::to_owned),
        _ => None,
    }
    .unwrap_or_else(|| DisplayErrorContext(&error).to_string());
    PrepullError::Aws {
        operation,
        code,
        message,
        retryable,
    }
}

impl From<PrepullError> for lambda_runtime::Diagnostic {
    fn from(error: PrepullError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.kind().to_owned(),
            error_message: error.to_string(),
        }
    }
}
