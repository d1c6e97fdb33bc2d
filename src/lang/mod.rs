//! The plan language: a file read with limits ([`source`]), a located tree ([`node`],
//! [`load`]), typed declarations ([`spec`]), the validated graph ([`plan`]), templates
//! ([`template`], [`render`]), schemas of parameters ([`schema_check`]), diagnostics and their [`code`]s,
//! durations and secrets. Imports nothing above it.

pub mod code;
pub mod diagnostic;
pub mod duration;
pub mod kind;
pub mod load;
pub mod node;
pub mod plan;
pub mod render;
pub mod schema_check;
pub mod secret;
pub mod source;
pub mod spec;
pub mod template;
