//! A small signed client of the control-plane API, for `coupler deploy` and `coupler status`.

use std::path::Path;

use axum::http::{HeaderMap, HeaderValue, Method};
use coupler_api::sigv4::{self, SigningParams};
use serde_json::Value;

/// Where the API is and the key to sign with.
#[derive(Debug, clap::Args)]
pub struct Endpoint {
    /// The control-plane API.
    #[arg(
        long,
        default_value = "http://127.0.0.1:7070",
        env = "COUPLER_ENDPOINT"
    )]
    pub endpoint: String,
    /// The data dir of the local `coupler up`, whose generated credentials are used when
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set.
    #[arg(long, default_value = "coupler-data", env = "COUPLER_DATA_DIR")]
    pub data_dir: std::path::PathBuf,
}

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

fn credentials(data_dir: &Path) -> Result<(String, String), String> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((id, secret));
    }
    let path = data_dir.join("credentials");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and {}: {e}",
            path.display()
        )
    })?;
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    match (field("aws_access_key_id"), field("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(format!("{}: no key pair in it", path.display())),
    }
}

impl Client {
    pub fn new(endpoint: &Endpoint) -> Result<Self, String> {
        let (key_id, secret) = credentials(&endpoint.data_dir)?;
        Self::with_key(endpoint, key_id, secret)
    }

    /// A client for the unsigned endpoints (`/health`), which needs no key.
    pub fn unsigned(endpoint: &Endpoint) -> Result<Self, String> {
        Self::with_key(endpoint, String::new(), String::new())
    }

    fn with_key(endpoint: &Endpoint, key_id: String, secret: String) -> Result<Self, String> {
        let base = endpoint.endpoint.trim_end_matches('/').to_owned();
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("--endpoint {base:?}: only http:// endpoints are supported"))?
            .to_owned();
        let region = std::env::var("AWS_DEFAULT_REGION")
            .or_else(|_| std::env::var("AWS_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        Ok(Self {
            http: reqwest::Client::new(),
            base,
            host,
            key_id,
            secret,
            region,
        })
    }

    /// A signed request; the JSON answer, or why it was refused.
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
        let mut headers = HeaderMap::new();
        headers.insert(
            "host",
            HeaderValue::from_str(&self.host).map_err(|e| e.to_string())?,
        );
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let (raw_path, raw_query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
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
                service: "greengrass",
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
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let refused = Refused {
            status: status.as_u16(),
            code: code.unwrap_or_else(|| status.to_string()),
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
