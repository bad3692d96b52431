//! prepull's pure core: what the functions know and decide, with no AWS SDK and no async
//! runtime (Cargo enforces it: this crate depends on neither).
//!
//! The adapters in the `prepull` crate read AWS, hand the facts to these functions, and carry
//! out the plan they return. Every decision here is tested as a table.

/// Lets a typed value be compared with the text AWS and the JSON summaries spell it as, so a
/// test or an operator's check reads `outcome == "written"`.
macro_rules! eq_text {
    ($($type:ty),+) => {$(
        impl PartialEq<&str> for $type {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )+};
}
pub(crate) use eq_text;

pub mod arn;
pub mod build;
pub mod clock;
pub mod component;
pub mod config;
pub mod document;
pub mod events;
pub mod image;
pub mod launch_template;
pub mod manifest;
pub mod metrics;
pub mod parameter;
pub mod recipe;
pub mod refresh;
pub mod registry;
pub mod schedule;
pub mod status;
pub mod token;
