//! prepull's local AWS bench and test harness.
//!
//! - [`emulator`]: Image Builder and Auto Scaling, emulated over their real wire protocols,
//!   in front of moto for SSM, ECR and EC2, with a request log and fault injection.
//! - [`moto`]: the moto server process, from the project's venv.
//! - [`bench`]: both together, ready for a test or for the `prepull-bench` command.
//! - [`fixtures`]: the JSON events under `tests/fixtures/`.
//! - [`seed`]: an account set up through the real APIs, as a user would have it.
//! - [`runtime_api`]: a local Lambda Runtime API that runs a function's real binary.
//! - [`cargo_lambda`]: `cargo lambda watch`, the other Runtime API the demo can use.
//! - [`demo`]: prepull's main job end to end, as `make demo` and the `demo_scenario` test run it.
//! - [`scenario`]: a seeded bench plus prepull's context, and events as AWS delivers them.

pub mod bench;
pub mod benchmark;
pub mod cargo_lambda;
pub mod demo;
pub mod emf;
pub mod emulator;
pub mod fixtures;
pub mod fuzz;
pub mod iam;
pub mod moto;
pub mod reliability;
pub mod runtime_api;
pub mod scenario;
pub mod seed;
