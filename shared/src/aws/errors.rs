//! How an SDK error becomes a [`PrepullError`]: its operation, code and message, whether a
//! retry can help, and the SDK error itself as the source.

use aws_sdk_imagebuilder::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::error::PrepullError;

/// AWS error codes that mean "try again later", beyond 5xx. Image Builder throttles with
/// `CallRateLimitExceededException`, which the SDK does not retry, and answers a resource
/// another request is changing with `ResourceInUseException`; SSM answers concurrent writes to
/// one parameter with `TooManyUpdates`.
const RETRYABLE_CODES: [&str; 7] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "CallRateLimitExceededException",
    "RequestLimitExceeded",
    "TooManyUpdates",
    "ResourceInUseException",
];

/// Classifies an SDK error from any of the service clients.
pub fn aws_error<E>(operation: &'static str, error: SdkError<E, Response>) -> PrepullError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
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
        source: Box::new(error),
    }
}

/// A response that lacks a member AWS always sends.
pub fn missing(what: &'static str, member: &str) -> PrepullError {
    PrepullError::Unexpected {
        what,
        detail: format!("the response has no {member}"),
    }
}
