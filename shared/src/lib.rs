//! The VMDistributed domain, pure and I/O-free: the API types, defaulting, `%ZONE%` templating,
//! merging, validation, rendering of children and the rollout decision. The webhook and the
//! controller are thin shells over this crate, so both judge an object the same way.

pub mod api;
pub mod children;
pub mod crd;
pub mod defaults;
pub mod duration;
pub mod merge;
pub mod model;
pub mod names;
pub mod offline;
pub mod parse;
mod path;
pub mod preflight;
pub mod queues;
pub mod render;
pub mod rollout;
pub mod spec;
pub mod template;
pub mod validation;
pub mod versions;

pub use api::{VMDistributed, VMDistributedSpec, VMDistributedStatus};
