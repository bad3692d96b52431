//! prepull's AWS adapters and handlers: what the Lambda functions under `functions/` call.
//!
//! - [`aws`] holds the SDK clients and one module per service; only it talks to AWS.
//! - [`handlers`] holds one module per function: read the input, read AWS through [`aws`],
//!   ask `prepull_core` what to do, do it, and return a JSON summary.
//!
//! Everything that decides lives in `prepull_core` (re-exported as [`core`]), which has no
//! AWS SDK dependency.

pub mod aws;
pub mod common;
pub mod error;
pub mod handlers;
pub mod metrics;

pub use common::Common;
pub use error::PrepullError;
pub use handlers::{build_finished, image_pushed, patch_day};
pub use prepull_core as core;
