//! The pure lifecycle core: every decision the operator makes, as functions of
//! (spec, status, what was observed, now), with no I/O and no clock reads.
//!
//! - [`environment`]: the environment state machine, its effects and its timers;
//! - [`generator`]: what TestMesh lists as an Argo CD ApplicationSet generator;
//! - [`observation`]: what the objects the reconciler gathered mean for the machine;
//! - [`ttl`]: idle-lifetime arithmetic;
//! - [`reuse`]: which environment a run of a context is bound to;
//! - [`claims`]: the queue of runs per environment and what each claim reports;
//! - [`routing`]: where a run reaches each service;
//! - [`conditions`]: condition types, reasons and `metav1.Condition` bookkeeping;
//! - [`phase`]: the phases users see (part of the resources' status, so
//!   [`crate::resources`] owns the type and the core only reads it);
//! - [`policy`]: which namespaces environments may use.

pub mod claims;
pub mod conditions;
pub mod environment;
pub mod generator;
pub mod observation;
pub use crate::resources::phase;
pub mod policy;
pub mod reuse;
pub mod routing;
pub mod ttl;

pub use phase::{ClaimPhase, Phase};

#[cfg(test)]
mod tests;
