//! Image Builder reads and writes, each one AWS call or one paginated listing. Decisions are
//! made in `prepull_core`; these functions only read the facts and carry the plans out. By
//! resource: the cache component, the pipeline and its recipe, and the pipeline's builds.

mod builds;
mod component;
mod pipeline;

pub use builds::*;
pub use component::*;
pub use pipeline::*;

use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::BuildStatus;

use crate::error::PrepullError;

/// Reads an ARN AWS returned; one that does not parse is a surprise worth an error.
fn returned_arn(what: &'static str, text: &str) -> Result<ImageBuilderArn, PrepullError> {
    ImageBuilderArn::parse(text).map_err(|e| PrepullError::Unexpected {
        what,
        detail: e.to_string(),
    })
}

/// Get calls answer `"tags": {}` for an untagged resource, and a tag map sent back must hold 1
/// to 50 entries: an empty map goes back as no map at all.
fn non_empty<K, V>(
    tags: Option<std::collections::HashMap<K, V>>,
) -> Option<std::collections::HashMap<K, V>> {
    tags.filter(|t| !t.is_empty())
}

/// Reads a status AWS returned.
fn returned_status(
    what: &'static str,
    status: Option<&aws_sdk_imagebuilder::types::ImageStatus>,
) -> Result<BuildStatus, PrepullError> {
    let text = status.map_or("", |s| s.as_str());
    text.parse().map_err(
        |e: prepull_core::build::UnknownStatus| PrepullError::Unexpected {
            what,
            detail: e.to_string(),
        },
    )
}

/// The largest page Image Builder's List operations return ("The largest page size that you
/// can request is 100 items"; the default is 25): a long-lived pipeline's builds in a quarter
/// of the calls.
const LARGEST_PAGE: i32 = 100;
