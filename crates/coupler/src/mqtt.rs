//! The core's device MQTT server: listeners, the group's devices, and the server
//! certificate issued by the group CA and kept fresh.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coupler_api::Service;
use coupler_api::service::ServerCertificate;
use coupler_model::validate::ValidatedGroup;
use coupler_mqtt::tls::{Material, TlsState};
use coupler_mqtt::{Broker, Devices};
use parking_lot::Mutex;

#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// Address of the device MQTT server (TLS, client certificates from the group CA or
    /// registered for a device of the group). `off` disables it.
    #[arg(long, default_value = "0.0.0.0:8883", env = "COUPLER_MQTT")]
    pub mqtt: String,
    /// Also serve MQTT over plain TCP on this address, without certificates: the client id
    /// alone names the device. Only for loopback development.
    #[arg(long, env = "COUPLER_MQTT_PLAIN")]
    pub mqtt_plain: Option<SocketAddr>,
    /// Largest PUBLISH payload a device may send, in bytes (Greengrass: 128 KiB).
    #[arg(long, default_value_t = 128 * 1024, env = "COUPLER_MQTT_MAX_PAYLOAD")]
    pub mqtt_max_payload: usize,
}

impl MqttArgs {
    pub fn tls_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.mqtt == "off" {
            return Ok(None);
        }
        self.mqtt
            .parse()
            .map(Some)
            .map_err(|e| format!("--mqtt {:?}: {e}", self.mqtt))
    }
}

/// Where the MQTT server's certificate comes from: the group CA of the control plane.
pub trait ServerCerts: Send + Sync {
    /// The host addresses in the core's connectivity information.
    fn connectivity(&self, thing: &str) -> Vec<String>;
    /// A server certificate for `names` from `group_id`'s CA.
    fn issue(&self, group_id: &str, names: Vec<String>) -> Result<ServerCertificate, String>;
}

/// The control plane in the same process.
#[derive(Debug)]
pub struct ServiceCerts(pub Arc<Service>);

impl ServerCerts for ServiceCerts {
    fn connectivity(&self, thing: &str) -> Vec<String> {
        self.0
            .get_connectivity(thing)
            .map(|v| crate::core::hosts(&v))
            .unwrap_or_default()
    }

    fn issue(&self, group_id: &str, names: Vec<String>) -> Result<ServerCertificate, String> {
        self.0
            .issue_server_certificate(group_id, names)
            .map_err(|e| e.to_string())
    }
}

/// The server certificate in use, and what it was issued for.
#[derive(Debug, Clone)]
struct Issued {
    group_id: String,
    names: Vec<String>,
    expires: SystemTime,
    lifetime: Duration,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Keeps the MQTT server in step with the active group.
pub struct Core {
    pub broker: Arc<Broker>,
    pub tls: Arc<TlsState>,
    certs: Arc<dyn ServerCerts>,
    dir: PathBuf,
    active: Mutex<Option<(String, String)>>,
    issued: Mutex<Option<Issued>>,
}

impl Core {
    pub fn new(
        broker: Arc<Broker>,
        certs: Arc<dyn ServerCerts>,
        data_dir: &std::path::Path,
    ) -> Self {
        Self {
            broker,
            tls: TlsState::new(),
            certs,
            dir: data_dir.join("ggc/var/state/server"),
            active: Mutex::new(None),
            issued: Mutex::new(None),
        }
    }

    /// A group became active (or, with `None`, none is).
    pub fn activate(&self, group: Option<(&str, &ValidatedGroup)>) {
        match group {
            Some((group_id, g)) => {
                self.broker.set_devices(Devices::from_group(&g.devices));
                *self.active.lock() =
                    Some((group_id.to_owned(), g.core.thing.thing_name().to_owned()));
                self.refresh(true);
            }
            None => {
                self.broker.set_devices(Devices::default());
                *self.active.lock() = None;
                *self.issued.lock() = None;
                self.tls.clear();
            }
        }
    }

    /// Reissue the server certificate if the group changed (`force`), a fifth of its life
    /// is left, or the core's connectivity information changed.
    pub fn refresh(&self, force: bool) {
        let Some((group_id, core_thing)) = self.active.lock().clone() else {
            return;
        };
        let names = self.names(&core_thing);
        let due = match &*self.issued.lock() {
            None => true,
            Some(i) => {
                force
                    || i.group_id != group_id
                    || i.names != names
                    || i.expires
                        .duration_since(SystemTime::now())
                        .map_or(true, |left| left < i.lifetime / 5)
            }
        };
        if !due {
            return;
        }
        if let Err(e) = self.issue(&group_id, names) {
            tracing::error!(group = %group_id, error = %e, "cannot issue the MQTT server certificate; TLS connections are refused");
            self.tls.clear();
        }
    }

    /// Names the server certificate carries: loopback, the host name, and the core's
    /// connectivity information.
    fn names(&self, core_thing: &str) -> Vec<String> {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
            let h = h.trim();
            if !h.is_empty() {
                names.push(h.to_owned());
            }
        }
        for host in self.certs.connectivity(core_thing) {
            if !names.contains(&host) {
                names.push(host);
            }
        }
        names
    }

    fn issue(&self, group_id: &str, names: Vec<String>) -> Result<(), String> {
        let issued = self.certs.issue(group_id, names.clone())?;
        let ms = issued.expiry_ms;
        let lifetime = Duration::from_millis(ms);
        let material = Material {
            ca_pem: issued.ca_pem,
            server_cert_pem: issued.certificate_pem,
            server_key_pem: issued.private_key_pem,
        };
        self.write_files(&material)?;
        self.tls
            .install(&material, self.broker.devices())
            .map_err(|e| e.to_string())?;
        tracing::info!(group = %group_id, names = ?names, days = ms / 86_400_000, "MQTT server certificate issued by the group CA");
        *self.issued.lock() = Some(Issued {
            group_id: group_id.to_owned(),
            names,
            expires: SystemTime::now() + lifetime,
            lifetime,
        });
        Ok(())
    }

    /// Where Greengrass kept them: `server.crt` (and its key), plus the group CA that
    /// devices verify the server with.
    fn write_files(&self, m: &Material) -> Result<(), String> {
        let err = |e: std::io::Error| format!("{}: {e}", self.dir.display());
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        std::fs::write(self.dir.join("server.crt"), &m.server_cert_pem).map_err(err)?;
        crate::up::write_private(&self.dir.join("server.key"), m.server_key_pem.as_bytes())
            .map_err(err)?;
        std::fs::write(self.dir.join("ca.pem"), &m.ca_pem).map_err(err)?;
        Ok(())
    }

    /// Check the certificate every minute until `stop`.
    pub async fn keep_fresh(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => self.refresh(false),
            }
        }
    }
}
