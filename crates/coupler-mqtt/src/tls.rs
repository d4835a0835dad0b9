//! TLS with mutual authentication: the server presents a certificate issued by the group
//! CA, and accepts a client certificate that chains to the group CA or is registered for a
//! device of the group (matched by its AWS IoT certificate id, the SHA-256 of its DER).

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::broker::Devices;
use crate::conn::Peer;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {source}")]
    Pem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the group CA certificate is not usable as a root: {0}")]
    Root(rustls::Error),
    #[error("cannot build the client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the server certificate or key is not usable: {0}")]
    Server(rustls::Error),
}

/// The certificates the server needs, all PEM.
#[derive(Clone)]
pub struct Material {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material").finish_non_exhaustive()
    }
}

/// The current TLS configuration; replaced when the group or the server certificate
/// changes. Connections already open keep the configuration they started with.
#[derive(Debug, Default)]
pub struct TlsState {
    current: ArcSwapOption<ServerConfig>,
}

impl TlsState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Build and install a configuration. Until one is installed, TLS handshakes fail.
    pub fn install(
        &self,
        material: &Material,
        devices: Arc<ArcSwap<Devices>>,
    ) -> Result<(), TlsError> {
        self.current
            .store(Some(Arc::new(server_config(material, devices)?)));
        Ok(())
    }

    pub fn clear(&self) {
        self.current.store(None);
    }

    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.current.load_full()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration for the group.
pub fn server_config(
    material: &Material,
    devices: Arc<ArcSwap<Devices>>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(material.ca_pem.as_bytes()) {
        let cert = cert.map_err(|source| TlsError::Pem {
            what: "group CA certificate",
            source,
        })?;
        roots
            .add(cert)
            .map_err(|e| TlsError::Root(rustls::Error::General(e.to_string())))?;
    }
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = GroupVerifier {
        webpki,
        devices,
        algorithms: provider.signature_verification_algorithms,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(material.server_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|source| TlsError::Pem {
                what: "server certificate",
                source,
            })?;
    let key =
        PrivateKeyDer::from_pem_slice(material.server_key_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: "server key",
                source,
            }
        })?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Server)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(TlsError::Server)
}

/// The AWS IoT certificate id of a certificate: SHA-256 of its DER, lower-case hex.
pub fn certificate_id(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The identity a verified TLS connection presents.
pub fn peer_of(certs: Option<&[CertificateDer<'_>]>) -> Option<Peer> {
    let leaf = certs?.first()?;
    let common_name = x509_parser::parse_x509_certificate(leaf.as_ref())
        .ok()
        .and_then(|(_, cert)| {
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_owned))
        });
    Some(Peer::Tls {
        certificate_id: certificate_id(leaf.as_ref()),
        common_name,
    })
}

/// Accepts a client certificate registered for a device of the group, or else one that
/// the WebPKI verifier chains to the group CA.
#[derive(Debug)]
struct GroupVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    devices: Arc<ArcSwap<Devices>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for GroupVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self
            .devices
            .load()
            .by_certificate(&certificate_id(end_entity.as_ref()))
            .is_some()
        {
            return Ok(ClientCertVerified::assertion());
        }
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
