//! TestMesh: isolated, warm, reusable test environments per context, deployed by a
//! GitOps controller and destroyed exactly when their idle TTL runs out.
//!
//! - [`resources`]: the custom resources users write and read;
//! - [`lifecycle`]: the pure decision core (state machine, TTL, reuse, conditions);
//! - [`providers`]: the GitOps controllers' objects, read behind one trait;
//! - [`operator`]: the process — HTTP, leadership, and the reconcilers while it leads;
//! - [`controller`]: the reconcilers that observe, decide with the core and apply;
//! - [`leadership`]: the Lease that lets exactly one of several replicas reconcile;
//! - [`http`], [`metrics`], [`telemetry`], [`config`]: its operational surface;
//! - [`api`]: the REST API and dashboard, acting with each caller's own Kubernetes token;
//! - [`ci`]: `testmesh claim` / `testmesh release` for CI jobs.
#![deny(warnings, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod api;
pub mod ci;
pub mod config;
pub mod controller;
pub mod crdgen;
pub mod error;
pub mod http;
pub mod leadership;
pub mod lifecycle;
pub mod metrics;
pub mod operator;
pub mod providers;
pub mod resources;
pub mod telemetry;
