//! The VMDistributed controller: observe the cluster, let the pure decision of the `shared` crate
//! say what to do, and act on it (docs/development.md "Layout"). The binary (`main.rs`) only
//! parses the command line and starts [`run::run`].
//!
//! - [`run`]: start-up checks, health endpoints, leader election and the kube-runtime controller;
//! - [`reconcile`]: one reconcile step (observe → decide → write status → act);
//! - [`writer`]: every request that changes something, behind the leader gate;
//! - [`cache`]: the child watches and their compact caches;
//! - [`queue_probe`]: the vmagent pods' queue gauges a persistent-queue drain polls (reads only);
//! - [`startup`], [`crd_watch`]: the CRDs and permissions the controller needs, at start and
//!   while it runs;
//! - [`leader`], [`backoff`], [`managed_fields`], [`metrics`], [`http`], [`error`], [`cli`].

pub mod backoff;
pub mod cache;
pub mod cli;
pub mod crd_watch;
pub mod error;
pub mod http;
pub mod leader;
pub mod managed_fields;
pub mod metrics;
pub mod queue_probe;
pub mod reconcile;
pub mod run;
pub mod startup;
pub mod writer;
