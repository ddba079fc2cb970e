//! TestMesh: isolated, warm, reusable test environments per context, deployed by a
//! GitOps controller and destroyed exactly when their idle TTL runs out.
//!
//! - [`resources`]: the custom resources users write and read;
//! - [`lifecycle`]: the pure decision core (state machine, TTL, reuse, conditions).
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod crdgen;
pub mod lifecycle;
pub mod resources;
