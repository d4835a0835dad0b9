//! Coupler's core runtime.
//!
//! For now: the deployment agent ([`agent`]), which takes pending deployments from a
//! control plane, applies them to the core (validation against the core's settings, the
//! routing table swapped atomically, the active group persisted) and reports the outcome.
//! The control plane is reached through the [`agent::ControlPlane`] trait, so the same agent
//! serves `coupler up` (control plane in process) and a core attached to a remote one.

pub mod active;
pub mod agent;
pub mod cloud;
pub mod functions;
pub mod isolation;
pub mod logs;
pub mod secrets;
pub mod shadow;
pub mod shadow_service;
pub mod spool;

pub use agent::{
    Agent, ControlPlane, OnActivate, Pending, PendingKind, PreparedUnits, Report, Status, Units,
};
