//! What the functions are given: ECR push events, Image Builder state changes and operators'
//! payloads, each read strictly. A value that does not fit is refused with an error naming
//! the field, before any AWS call.

pub mod ecr;
pub mod imagebuilder;
pub mod operator;

/// An input that cannot be acted on, with the reason (which names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
