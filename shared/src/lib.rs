//! prepull's shared library: everything the Lambda functions have in common.
//!
//! The functions under `functions/` stay thin; configuration, events, the cache manifest,
//! component rendering, the rebuild planner and the AWS adapters live here.

pub mod aws;
pub mod config;
pub mod document;
pub mod events;
pub mod image;
pub mod manifest;
