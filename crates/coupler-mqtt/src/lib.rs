//! Coupler's device MQTT server: MQTT 3.1.1 and 5.0, over TLS with the group CA or, for
//! development, plain TCP.
//!
//! The server is a thin session layer over the router. A device's PUBLISH enters the
//! router with the device as its source, so only the group's subscriptions move it; a
//! device's SUBSCRIBE is granted only for filters some subscription targeting the device
//! could deliver on; and messages reach a device through its router inbox, which doubles
//! as the session's queue. QoS 0, 1 and 2, retained messages, wills, keepalive, client-id
//! takeover and persistent sessions are handled here. See `docs/mqtt.md`.

mod broker;
mod conn;
mod packet;
mod session;
pub mod tls;

use std::sync::Arc;

pub use broker::{Broker, CloseReason, Config, Devices, StatsSnapshot, device_inbox};
pub use conn::Peer;
#[doc(hidden)]
pub use packet::decode_all;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How a listener's connections are secured.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain TCP, for loopback development: the client id alone names the device.
    Plain,
    /// TLS with a client certificate, configured by the current [`tls::TlsState`].
    Tls(Arc<tls::TlsState>),
}

/// How long a shutdown waits for open connections to say goodbye (DISCONNECT 0x8B).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Accept connections on `listener` until `cancel` fires; each runs in its own task and
/// ends with it. Returns once those tasks have ended (or after a 2 s grace), so a
/// process that awaits this does not exit before its clients were told why.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    broker: Arc<Broker>,
    cancel: CancellationToken,
) {
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, addr) = tokio::select! {
            () = cancel.cancelled() => {
                conns.close();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, conns.wait()).await;
                return;
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, typically: wait instead of spinning.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        broker::bump(&broker.stats.accepted);
        let open = broker.stats.open.load(std::sync::atomic::Ordering::Relaxed);
        if open >= broker.config.max_connections as u64 {
            broker.stats.closed(CloseReason::TooManyConnections);
            tracing::warn!(peer = %addr, limit = broker.config.max_connections, "MQTT connection refused: too many connections");
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let broker = broker.clone();
        let transport = transport.clone();
        let cancel = cancel.child_token();
        conns.spawn(async move {
            match transport {
                Transport::Plain => conn::run(broker, tcp, Peer::Plain, addr, cancel).await,
                Transport::Tls(state) => {
                    let Some(config) = state.current() else {
                        broker.stats.closed(CloseReason::TlsFailed);
                        tracing::warn!(peer = %addr, "MQTT TLS connection refused: no group with a certificate authority is deployed");
                        return;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let timeout = broker.config.connect_timeout;
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            broker.stats.closed(CloseReason::TlsFailed);
                            tracing::warn!(peer = %addr, error = %e, "MQTT TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            broker.stats.closed(CloseReason::ConnectTimeout);
                            tracing::warn!(peer = %addr, "MQTT TLS handshake timed out");
                            return;
                        }
                    };
                    let Some(peer) = tls::peer_of(stream.get_ref().1.peer_certificates()) else {
                        broker.stats.closed(CloseReason::TlsFailed);
                        tracing::warn!(peer = %addr, "MQTT TLS connection without a client certificate");
                        return;
                    };
                    conn::run(broker, stream, peer, addr, cancel).await;
                }
            }
        });
    }
}
