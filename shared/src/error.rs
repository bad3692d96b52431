//! prepull's errors. Each says what failed and whether trying again can help, which decides
//! whether a function fails its invocation (so Lambda or SQS retries) or reports and moves on.

use prepull_core::config::ConfigError;
use prepull_core::document::DocumentError;
use prepull_core::events::InvalidInput;
use prepull_core::recipe::RecipeProblem;

/// The cause of an AWS error, kept whole so logs and `source()` chains show it.
pub type AwsSource = Box<dyn std::error::Error + Send + Sync + 'static>;

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
        #[source]
        source: AwsSource,
    },
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the recipe {recipe} of pipeline {pipeline}: {problem} {component}")]
    Recipe {
        pipeline: String,
        recipe: String,
        component: String,
        problem: RecipeProblem,
    },
    #[error("{what}: {detail}")]
    Unexpected { what: &'static str, detail: String },
    #[error("gave up after {attempts} attempts: {what} kept changing under concurrent writers")]
    Contention { what: &'static str, attempts: u32 },
    /// Parameter Store answered a write of an `aws:ec2:image` value with a version that never
    /// appeared: its asynchronous validation refused the AMI (deregistered, not in that region,
    /// not available yet). Nothing was labelled and no group refreshed onto it.
    #[error(
        "{parameter} in {region}: version {version} with {ami} was never written; Parameter Store's aws:ec2:image validation refused the AMI (EC2 may not have it in {region})"
    )]
    ValueNotAccepted {
        parameter: String,
        region: String,
        ami: String,
        version: i64,
    },
    /// The recipe's wildcard reference did not resolve to the component build this run wrote
    /// within the wait, or resolved to a newer writer's: a build started now would cache
    /// another manifest than the one it is labelled with.
    #[error(
        "the recipe's {reference} resolves to {resolved}, not to {written}: a build started now would not cache the version this run wrote; no build was started"
    )]
    ComponentNotVisible {
        reference: String,
        resolved: String,
        written: String,
    },
    /// An instance refresh that failed in a way a retry can fix. The other groups' outcomes
    /// are in the logs; Lambda retries the invocation, which finds what is already done.
    #[error("instance refresh of {group} failed: {message}")]
    RefreshFailed { group: String, message: String },
}

impl From<InvalidInput> for PrepullError {
    fn from(error: InvalidInput) -> Self {
        PrepullError::InvalidInput(error.0)
    }
}

impl PrepullError {
    /// Whether the same request may succeed later: throttling, 5xx, timeouts, contention.
    pub fn is_retryable(&self) -> bool {
        match self {
            PrepullError::Aws { retryable, .. } => *retryable,
            // An AMI can take a moment to be visible in a region; a retry reads again.
            PrepullError::Contention { .. }
            | PrepullError::RefreshFailed { .. }
            | PrepullError::ValueNotAccepted { .. }
            | PrepullError::ComponentNotVisible { .. } => true,
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
            PrepullError::Recipe { .. } => "prepull.Recipe",
            PrepullError::Unexpected { .. } => "prepull.Unexpected",
            PrepullError::Contention { .. } => "prepull.Contention",
            PrepullError::RefreshFailed { .. } => "prepull.RefreshFailed",
            PrepullError::ValueNotAccepted { .. } => "prepull.ValueNotAccepted",
            PrepullError::ComponentNotVisible { .. } => "prepull.ComponentNotVisible",
        }
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
