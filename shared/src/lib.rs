//! prepull's shared library: everything the Lambda functions have in common.
//!
//! The functions under `functions/` stay thin; configuration, events, the cache manifest,
//! component rendering, the rebuild planner and the AWS adapters live here.

pub mod aws;
pub mod build_finished;
pub mod common;
pub mod config;
pub mod document;
pub mod ecr;
pub mod error;
pub mod events;
pub mod image;
pub mod image_pushed;
pub mod imagebuilder;
pub mod manifest;
pub mod patch_day;
pub mod plan;
pub mod reconcile;

pub use common::Common;
pub use error::PrepullError;
