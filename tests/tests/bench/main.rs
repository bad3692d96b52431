//! The bench's own tests, as one test binary: the Image Builder and Auto Scaling emulator
//! (through the Rust SDK and boto3), moto behind the same server, fault injection and the
//! request log, and the `prepull-bench` command.
//!
//! They are apart from prepull's end-to-end suite (`tests/suite`) so that a failure says at
//! once whether the bench or the product broke.

mod autoscaling_emulator;
mod bench_command;
mod bench_with_moto;
mod boto3_clients;
mod faults_and_request_log;
mod imagebuilder_emulator;
