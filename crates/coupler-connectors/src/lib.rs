//! Coupler's connector framework and the Greengrass connectors it runs.
//!
//! A connector is a [`Kind`] in the [`registry`]: a name, the catalog versions it
//! implements, and a `build` function that checks its parameters and resources against the
//! [`Context`] and returns a [`Connector`]. The [`host::Host`] builds every connector of a
//! group at deployment (a failure fails the deployment, naming the connector), runs each
//! under a supervisor that restarts it with backoff, and stops it within a deadline.
//! See `docs/specs/connector.md` for how to write one.

pub mod aws;
pub mod cloudwatch;
pub mod contained;
pub mod context;
pub mod defender_metrics;
pub mod device_defender;
pub mod firehose;
pub mod host;
pub mod http;
pub mod modbus_rtu;
pub mod registry;
pub mod secrets_manager;
pub mod serial_stream;
pub mod sns;
pub mod twilio;

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;

pub use context::{Context, Handle, LocalResource, Output, Parts, SecretSource};
pub use coupler_model::SecretValue;

/// The router inbox of a connector: Greengrass's `maxWorkItemCount` of 1024. While the
/// connector runs, a sender finding it full waits up to 2 s for room (so a fast device is
/// slowed to the connector's pace rather than losing what it already had acknowledged),
/// then the message is dropped and counted. While it is stopped or backing off, the oldest
/// message gives way.
pub fn connector_inbox() -> coupler_router::InboxConfig {
    coupler_router::InboxConfig {
        capacity: 1024,
        when_full: coupler_router::WhenFull::BlockWhileAttached {
            deadline: std::time::Duration::from_secs(2),
            attached_depth: 1024,
        },
    }
}

/// A boxed future, as a trait object's method returns it.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a running connector stopped on its own; the supervisor logs it and restarts it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// A built connector, ready to run.
pub trait Connector: Send + 'static {
    /// Serve until `ctx` is cancelled (return `Ok`) or something breaks (return `Err`).
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>>;
}

/// A connector this core can run.
#[derive(Debug)]
pub struct Kind {
    /// The name in its ARN, `arn:aws:greengrass:REGION::/connectors/NAME/versions/N`.
    pub name: &'static str,
    pub versions: RangeInclusive<u32>,
    /// Check the parameters and resources and build the connector; an error fails the
    /// deployment with its text.
    pub build: fn(&Context) -> Result<Box<dyn Connector>, String>,
}
