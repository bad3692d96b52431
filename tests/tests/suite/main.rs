//! prepull's end-to-end suite, as one test binary.
//!
//! One binary instead of one per file: each links the whole AWS SDK, so a dozen binaries cost
//! gigabytes of `target/` and a dozen links. Tests that need moto take turns with the one moto
//! this process starts (see `prepull_bench::bench::Bench`).
//!
//! `endpoint_variables.rs` stays a binary of its own: it sets process environment variables.

mod autoscaling_emulator;
mod bench_command;
mod bench_with_moto;
mod boto3_clients;
mod build_finished;
mod demo_scenario;
mod faults_and_request_log;
mod fixtures;
mod golden_documents;
mod image_pushed;
mod imagebuilder_emulator;
mod patch_day;
