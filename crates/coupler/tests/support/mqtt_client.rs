//! What the benchmarks need to drive a running `coupler up` as a user would: a lean MQTT 3.1.1
//! device client (framed on the codec crate, over plain TCP or mutual TLS) and the
//! control-plane calls that create a group and deploy it.

// Each benchmark uses the parts it needs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use bytes::{Bytes, BytesMut};
use coupler_api::client::Client;
use rmqtt_codec::types::{Publish, QoS};
use rmqtt_codec::v3;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The device side of mutual TLS: `certs` holds `THING.cert.pem` and `THING.private.key`.
#[derive(Clone)]
pub struct Tls {
    pub certs: PathBuf,
    pub ca: Arc<rustls::RootCertStore>,
}

impl Tls {
    pub fn config(&self, thing: &str) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.certs.join(format!("{thing}.cert.pem")))
                .expect("device cert")
                .map(|c| c.expect("pem"))
                .collect();
        let key = PrivateKeyDer::from_pem_file(self.certs.join(format!("{thing}.private.key")))
            .expect("device key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(self.ca.clone())
                .with_client_auth_cert(chain, key)
                .expect("client cert"),
        )
    }
}

/// A PUBLISH packet; `id` is its packet id (0 taken as 1), unused at QoS 0.
pub fn publish(topic: &str, qos: QoS, id: u16, payload: Bytes) -> v3::Packet {
    v3::Packet::Publish(Box::new(Publish {
        dup: false,
        retain: false,
        qos,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce)
            .then(|| std::num::NonZeroU16::new(id.max(1)).expect("id")),
        payload,
        properties: None,
    }))
}

/// A connected client: framed MQTT 3.1.1 over plain TCP or TLS.
pub struct Conn {
    pub io: Box<dyn Io>,
    pub codec: v3::Codec,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
}

impl Conn {
    pub async fn open(addr: SocketAddr, tls: Option<&Tls>, id: &str) -> Conn {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(t) => {
                let connector = tokio_rustls::TlsConnector::from(t.config(id));
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                Box::new(connector.connect(name, tcp).await.expect("TLS handshake"))
            }
        };
        let mut c = Conn {
            io,
            codec: v3::Codec::new(0),
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
        };
        c.put(v3::Packet::Connect(Box::new(v3::Connect {
            client_id: id.into(),
            keep_alive: 60,
            clean_session: true,
            ..v3::Connect::default()
        })));
        c.flush().await;
        match c.next().await {
            v3::Packet::ConnectAck(a)
                if a.return_code == v3::ConnectAckReason::ConnectionAccepted =>
            {
                c
            }
            other => panic!("{id}: CONNECT refused: {other:?}"),
        }
    }

    /// Queue a packet; `flush` writes what is queued.
    pub fn put(&mut self, p: v3::Packet) {
        self.codec.encode(p, &mut self.wbuf).expect("encode");
    }

    pub async fn flush(&mut self) {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await.expect("write");
            self.io.flush().await.expect("flush");
            self.wbuf.clear();
        }
    }

    /// The next packet from the broker.
    pub async fn next(&mut self) -> v3::Packet {
        loop {
            if let Some((p, _)) = self.codec.decode(&mut self.rbuf).expect("decode") {
                return p;
            }
            if self.io.read_buf(&mut self.rbuf).await.expect("read") == 0 {
                panic!("connection closed by the broker");
            }
        }
    }

    /// The next packet if the broker has already sent it (or is sending it now); `None` at
    /// once otherwise. Nothing is lost when it returns `None`.
    pub async fn ready(&mut self) -> Option<v3::Packet> {
        // `next` keeps partial packets in `rbuf`, so cancelling it loses nothing.
        tokio::time::timeout(Duration::ZERO, self.next()).await.ok()
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.put(v3::Packet::Subscribe {
            packet_id: std::num::NonZeroU16::MIN,
            topic_filters: vec![(filter.into(), qos)],
        });
        self.flush().await;
        match self.next().await {
            v3::Packet::SubscribeAck { status, .. }
                if matches!(status[0], v3::SubscribeReturnCode::Success(_)) => {}
            other => panic!("SUBSCRIBE {filter} refused: {other:?}"),
        }
    }
}

/// The control-plane API of a running `coupler up`, called synchronously (on a runtime of its
/// own, so not from within another runtime).
pub struct Api {
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    pub fn new(base: &str, key: &str, secret: &str) -> Api {
        Api {
            client: Client::new(base, key, secret, "us-east-1").expect("client"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt"),
        }
    }

    /// A request that must succeed; its answer.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let what = format!("{method} {path}");
        self.rt
            .block_on(self.client.call(method, path, body))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// A definition (`kind` as in `/greengrass/definition/KIND`: cores, devices, …) with
    /// `version` as its initial version; the version's ARN.
    pub fn definition(&self, kind: &str, version: Value) -> Value {
        self.call(
            Method::POST,
            &format!("/greengrass/definition/{kind}"),
            Some(&json!({ "InitialVersion": version })),
        )["LatestVersionArn"]
            .clone()
    }

    /// A group whose initial version holds one definition of each `(kind, version)`; its id
    /// and version id.
    pub fn group(&self, name: &str, parts: &[(&str, Value)]) -> (String, String) {
        let mut version = serde_json::Map::new();
        for (kind, v) in parts {
            let field = match *kind {
                "cores" => "CoreDefinitionVersionArn",
                "devices" => "DeviceDefinitionVersionArn",
                "subscriptions" => "SubscriptionDefinitionVersionArn",
                "resources" => "ResourceDefinitionVersionArn",
                "connectors" => "ConnectorDefinitionVersionArn",
                "functions" => "FunctionDefinitionVersionArn",
                "loggers" => "LoggerDefinitionVersionArn",
                other => panic!("no definition kind {other:?}"),
            };
            version.insert(field.into(), self.definition(kind, v.clone()));
        }
        let group = self.call(
            Method::POST,
            "/greengrass/groups",
            Some(&json!({ "Name": name, "InitialVersion": version })),
        );
        (
            group["Id"].as_str().expect("Id").to_owned(),
            group["LatestVersion"]
                .as_str()
                .expect("LatestVersion")
                .to_owned(),
        )
    }

    /// Deploy a group version and wait for the core to report Success (panics on Failure).
    pub fn deploy(&self, group: &str, version: &str) {
        let d = self.call(
            Method::POST,
            &format!("/greengrass/groups/{group}/deployments"),
            Some(&json!({"DeploymentType": "NewDeployment", "GroupVersionId": version})),
        );
        let id = d["DeploymentId"].as_str().expect("DeploymentId");
        let status = format!("/greengrass/groups/{group}/deployments/{id}/status");
        loop {
            let s = self.call(Method::GET, &status, None);
            match s["DeploymentStatus"].as_str() {
                Some("Success") => return,
                Some("InProgress" | "Building") => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("deployment {other:?}: {s}"),
            }
        }
    }
}
