//! The HTTP client the service connectors (Twilio, AWS services) share.

use std::sync::OnceLock;
use std::time::Duration;

/// An HTTPS client with its own timeout per request, on the one client every connector of
/// the process shares: one connection pool, one resolver, one set of root certificates.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl Http {
    /// A POST to `url`, ended after the timeout.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.client.post(url).timeout(self.timeout)
    }
}

/// A client whose requests end after `timeout`. rustls with the ring provider, the one TLS
/// stack of the core; the system's roots verify servers.
pub fn client(timeout: Duration) -> Result<Http, String> {
    static SHARED: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let client = SHARED
        .get_or_init(|| {
            // Another part of the core may have installed it first; either way ring is the
            // default.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        })
        .clone()?;
    Ok(Http { client, timeout })
}

/// An `application/x-www-form-urlencoded` body. Only `A-Za-z0-9-_.~` stay as they are,
/// which is how AWS canonicalises a Query request and what every form decoder (Twilio's
/// included) reads back.
pub fn form_encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_into(&mut out, k.as_ref());
        out.push('=');
        escape_into(&mut out, v.as_ref());
    }
    out
}

fn escape_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_encoding_keeps_only_unreserved_characters() {
        let p = [("Action", "Publish"), ("Message", "a b+c/é~")];
        assert_eq!(
            super::form_encode(&p),
            "Action=Publish&Message=a%20b%2Bc%2F%C3%A9~"
        );
    }

    #[test]
    fn builds() {
        super::client(std::time::Duration::from_secs(1)).expect("client");
    }
}
