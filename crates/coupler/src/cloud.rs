//! The `--cloud*` flags: where the cloud bridge connects (see `docs/cloud.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coupler_runtime::cloud::Upstream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone, clap::Args)]
pub struct CloudArgs {
    /// The upstream MQTT broker for subscriptions with `cloud` as Source or Target:
    /// `mqtts://HOST[:8883]` (TLS) or `mqtt://HOST[:1883]`. Without it, messages for the
    /// cloud wait in the spool (within its bound).
    #[arg(long, env = "COUPLER_CLOUD", value_name = "URL")]
    pub cloud: Option<String>,
    /// CA certificates (PEM) that the upstream broker's certificate must chain to; required
    /// for `mqtts://` (for AWS IoT Core: AmazonRootCA1.pem).
    #[arg(long, env = "COUPLER_CLOUD_CA", value_name = "PEM")]
    pub cloud_ca: Option<PathBuf>,
    /// Client certificate (PEM) for TLS client authentication (the core's certificate).
    #[arg(
        long,
        env = "COUPLER_CLOUD_CERT",
        value_name = "PEM",
        requires = "cloud_key"
    )]
    pub cloud_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "COUPLER_CLOUD_KEY",
        value_name = "PEM",
        requires = "cloud_cert"
    )]
    pub cloud_key: Option<PathBuf>,
    /// User name for the upstream broker (with --cloud-password).
    #[arg(long, env = "COUPLER_CLOUD_USERNAME", requires = "cloud_password")]
    pub cloud_username: Option<String>,
    #[arg(long, env = "COUPLER_CLOUD_PASSWORD", hide_env_values = true)]
    pub cloud_password: Option<String>,
    /// MQTT client id upstream; the default is the core's thing name.
    #[arg(long, env = "COUPLER_CLOUD_CLIENT_ID")]
    pub cloud_client_id: Option<String>,
    /// MQTT keepalive upstream, in seconds.
    #[arg(long, default_value_t = 30, env = "COUPLER_CLOUD_KEEPALIVE")]
    pub cloud_keepalive: u16,
    /// Messages published upstream and not yet acknowledged, at most (Greengrass: 1).
    #[arg(long, default_value_t = 100, env = "COUPLER_CLOUD_WINDOW",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub cloud_window: u16,
}

impl CloudArgs {
    /// The upstream broker, with its TLS settings loaded; `None` without `--cloud`.
    pub fn upstream(&self) -> Result<Option<Upstream>, String> {
        let Some(url) = &self.cloud else {
            return Ok(None);
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "--cloud {url:?}: use mqtts://HOST[:PORT] or mqtt://HOST[:PORT]"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_host_port(rest, if tls { 8883 } else { 1883 })
            .map_err(|e| format!("--cloud {url:?}: {e}"))?;
        let tls = if tls {
            Some(Arc::new(self.tls_config()?))
        } else {
            if self.cloud_cert.is_some() || self.cloud_ca.is_some() {
                return Err(format!(
                    "--cloud {url:?} is plain TCP: --cloud-ca and --cloud-cert need mqtts://"
                ));
            }
            None
        };
        Ok(Some(Upstream {
            host,
            port,
            tls,
            client_id: self.cloud_client_id.clone(),
            credentials: self.cloud_username.clone().zip(self.cloud_password.clone()),
            keep_alive: Duration::from_secs(u64::from(self.cloud_keepalive.max(5))),
            window: self.cloud_window,
        }))
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let Some(ca) = &self.cloud_ca else {
            return Err(
                "--cloud mqtts://… needs --cloud-ca (the CA that signed the broker's certificate)"
                    .into(),
            );
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca, "--cloud-ca")? {
            roots
                .add(cert)
                .map_err(|e| format!("--cloud-ca {}: {e}", ca.display()))?;
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        match (&self.cloud_cert, &self.cloud_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "--cloud-cert")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("--cloud-key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--cloud-cert/--cloud-key: {e}"))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("unclosed [")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port"))?,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("h", 1883), Ok(("h".into(), 1883)));
        assert_eq!(split_host_port("h:1", 1883), Ok(("h".into(), 1)));
        assert_eq!(split_host_port("[::1]:9", 1883), Ok(("::1".into(), 9)));
        assert_eq!(split_host_port("[::1]", 8883), Ok(("::1".into(), 8883)));
        assert!(split_host_port(":1", 1).is_err());
        assert!(split_host_port("h:x", 1).is_err());
    }
}
