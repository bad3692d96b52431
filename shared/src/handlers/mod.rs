//! One module per function, and the reconcile path image-pushed and patch-day share.

pub mod build_finished;
pub mod image_pushed;
pub mod launch_template;
pub mod patch_day;
pub mod reconcile;
pub mod status;
