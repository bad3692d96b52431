//! One module per function, the reconcile path image-pushed and patch-day share, and the one
//! start path all three share.

pub mod build_finished;
pub mod image_pushed;
pub mod launch_template;
pub mod patch_day;
pub mod reconcile;
pub mod start;
pub mod status;
