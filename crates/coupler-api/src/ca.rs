//! Group certificate authorities: a real key pair and self-signed CA certificate per group.
//!
//! Keys are ECDSA P-256 (the `ring` provider cannot generate RSA keys). The device MQTT server
//! presents a certificate issued by the group's active CA, and devices verify it with the PEM
//! that `GetGroupCertificateAuthority` returns.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Validity of a group CA: five years.
pub const CA_VALIDITY_MS: u64 = 5 * 365 * 24 * 3600 * 1000;
/// Allowed lifetimes of the core's server certificate: 7 to 30 days, as in Greengrass.
pub const CERTIFICATE_EXPIRY_MS: std::ops::RangeInclusive<u64> =
    7 * 24 * 3600 * 1000..=30 * 24 * 3600 * 1000;

pub fn default_certificate_expiry_ms() -> u64 {
    *CERTIFICATE_EXPIRY_MS.start()
}

/// A group CA as stored: the certificate, and the private key the store keeps for issuing.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupCa {
    pub id: String,
    /// The CA's common name, from which its issuer name is rebuilt when it signs.
    pub common_name: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// The CA's subject and constraints; the same for creating it and for signing with it.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Coupler");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl std::fmt::Debug for GroupCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCa")
            .field("id", &self.id)
            .field("private_key_pem", &"**REDACTED**")
            .finish_non_exhaustive()
    }
}

/// A certificate and key issued by a group CA.
#[derive(Clone)]
pub struct Issued {
    pub certificate_pem: String,
    pub private_key_pem: String,
    /// The AWS IoT certificate id: the SHA-256 of the certificate's DER, lower-case hex.
    pub certificate_id: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// What an issued certificate is for.
#[derive(Debug, Clone)]
pub enum Usage {
    /// The core's MQTT server: DNS names and IP addresses it answers on.
    Server { names: Vec<String> },
    /// A device: the certificate's common name is its thing name.
    Client { thing_name: String },
}

impl GroupCa {
    pub fn generate(id: &str, group_name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let common_name = format!("Coupler group CA {group_name}");
        let mut params = ca_params(&common_name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::milliseconds(CA_VALIDITY_MS as i64);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            id: id.to_owned(),
            common_name,
            certificate_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
        })
    }

    /// Issue a leaf certificate valid for `validity`.
    pub fn issue(&self, usage: &Usage, validity: Duration) -> Result<Issued, rcgen::Error> {
        let ca_key = KeyPair::from_pem(&self.private_key_pem)?;
        let issuer = Issuer::new(ca_params(&self.common_name), ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        match usage {
            Usage::Server { names } => {
                dn.push(
                    DnType::CommonName,
                    names.first().cloned().unwrap_or_default(),
                );
                params.subject_alt_names = names
                    .iter()
                    .map(|n| match n.parse() {
                        Ok(ip) => Ok(SanType::IpAddress(ip)),
                        Err(_) => n.clone().try_into().map(SanType::DnsName),
                    })
                    .collect::<Result<_, _>>()?;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Usage::Client { thing_name } => {
                dn.push(DnType::CommonName, thing_name.clone());
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            certificate_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
            certificate_id: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(cert.der()))
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issues_server_and_client_certificates() {
        let ca = GroupCa::generate("ca-1", "g").unwrap();
        assert!(
            ca.certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(!format!("{ca:?}").contains("PRIVATE"));
        let server = ca
            .issue(
                &Usage::Server {
                    names: vec!["localhost".into(), "127.0.0.1".into()],
                },
                Duration::days(7),
            )
            .unwrap();
        assert!(server.certificate_pem.contains("BEGIN CERTIFICATE"));
        let client = ca
            .issue(
                &Usage::Client {
                    thing_name: "device-1".into(),
                },
                Duration::days(30),
            )
            .unwrap();
        assert!(client.private_key_pem.contains("PRIVATE KEY"));
        // openssl, an independent verifier, accepts both chains.
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.certificate_pem).unwrap();
        for (name, leaf, purpose) in [
            ("server", &server, "sslserver"),
            ("client", &client, "sslclient"),
        ] {
            let p = dir.path().join(format!("{name}.pem"));
            std::fs::write(&p, &leaf.certificate_pem).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(&ca_path)
                .arg(&p)
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
