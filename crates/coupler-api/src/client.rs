//! A small SigV4-signed client of the control-plane API: for `coupler deploy` and
//! `coupler status`, and for the benchmarks.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method};
use bytes::Bytes;
use serde_json::Value;

use crate::sigv4::{self, SigningParams};

pub struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
    key_id: String,
    secret: String,
    region: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// An answer the API refused, with its AWS error code.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Vec<String>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl Client {
    /// A client of the API at `base` (`http://HOST:PORT`), signing with this key.
    pub fn new(base: &str, key_id: &str, secret: &str, region: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_owned();
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base:?}: only http:// endpoints are supported"))?
            .to_owned();
        // reqwest's TLS (enabled in the build for the service connectors) needs a crypto
        // provider even for plain HTTP; ring is the core's one provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            http: reqwest::Client::new(),
            base,
            host,
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            region: region.to_owned(),
        })
    }

    /// A signed request with a JSON body; the JSON answer, or why it was refused.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let (bytes, _) = self.call_raw(method, path, body).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A JSON 1.1 operation (`X-Amz-Target`, as the Secrets Manager API on the same
    /// endpoint takes them), signed for `service`; the JSON answer, or why it was refused.
    pub async fn call_target(
        &self,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert(
            "x-amz-target",
            HeaderValue::from_str(target).map_err(|e| e.to_string())?,
        );
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let (bytes, _) = self.send(Method::POST, "/", headers, body, service).await?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{target}: {e}"))
    }

    /// A signed request with a prepared body; the raw answer and how long the round trip
    /// took (signing included), or why it was refused.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(Bytes, Duration), String> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        // The Lambda API shares the endpoint but signs as its own service.
        let service = if path.starts_with("/2015-03-31/") {
            "lambda"
        } else {
            "greengrass"
        };
        self.send(method, path, headers, body, service).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Vec<u8>,
        service: &str,
    ) -> Result<(Bytes, Duration), String> {
        headers.insert(
            "host",
            HeaderValue::from_str(&self.host).map_err(|e| e.to_string())?,
        );
        let (raw_path, raw_query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let started = Instant::now();
        let signed = sigv4::sign(
            &sigv4::Request {
                method: method.as_str(),
                raw_path,
                raw_query,
                headers: &headers,
                body: &body,
            },
            &SigningParams {
                access_key_id: &self.key_id,
                secret_access_key: &self.secret,
                region: &self.region,
                service,
                time: time::OffsetDateTime::now_utc(),
            },
        )
        .map_err(|e| e.to_string())?;
        signed.apply_to(&mut headers);
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let status = res.status();
        let code = res
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = res.bytes().await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        if status.is_success() {
            return Ok((bytes, elapsed));
        }
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let refused = Refused {
            status: status.as_u16(),
            // JSON 1.1 operations name their error in `__type`.
            code: code
                .or_else(|| json["__type"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.to_string()),
            message: json["Message"]
                .as_str()
                .or(json["message"].as_str())
                .unwrap_or_default()
                .to_owned(),
            details: json["ErrorDetails"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d["DetailedErrorMessage"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Err(refused.to_string())
    }

    /// An unsigned GET (for `/health`).
    pub async fn get_plain(&self, path: &str) -> Result<Value, String> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let bytes = res.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))
    }
}
