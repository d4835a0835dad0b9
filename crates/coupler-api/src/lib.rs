//! Coupler's control plane: the Greengrass 2017-06-07 REST API on an embedded store, with
//! the Secrets Manager and Lambda subsets a Greengrass group needs beside it.
//!
//! [`serve`] runs it on an already-bound listener until a shutdown signal; [`http::router`]
//! gives the bare axum router for tests. Every operation is a method of [`Service`]; the
//! store is a [`store::Store`] (SQLite by default). See `docs/api.md` for the operations.

pub mod ca;
pub mod client;
pub mod error;
pub mod http;
pub mod lambda;
pub mod secrets;
pub mod service;
pub mod sigv4;
pub mod store;
mod versions;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

pub use http::{AccessKey, AppState, Auth};
pub use service::Service;

/// Serve the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, axum::Router::new(), shutdown).await
}

/// [`serve`], with `extra` routes beside the API that need no signature (`/health`,
/// `/metrics`).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    extra: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers go out whole at once; without TCP_NODELAY a small response can wait for the
    // client's delayed acknowledgement.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, extra.merge(http::router(state)))
        .with_graceful_shutdown(shutdown)
        .await
}
