//! prepull's end-to-end suite, as one test binary.
//!
//! One binary instead of one per file: each links the whole AWS SDK, so a dozen binaries cost
//! gigabytes of `target/` and a dozen links. Tests that need moto take turns with the one moto
//! this process starts (see `prepull_bench::bench::Bench`).
//!
//! The bench's own tests are the `bench` binary beside this one; `endpoint_variables.rs` is a
//! binary of its own because it sets process environment variables.

mod awstoe_documents;
mod build_finished;
mod dashboard;
mod demo_scenario;
mod fixtures;
mod fuzzing;
mod golden_documents;
mod hostile;
mod image_pushed;
mod launch_templates;
mod patch_day;
mod performance;
mod status;
