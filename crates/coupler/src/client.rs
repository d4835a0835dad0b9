//! Where `coupler deploy` and `coupler status` find the API and their key.

use std::path::Path;

pub use coupler_api::client::Client;

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

/// The key in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or else in the shared-credentials
/// `file` (as `coupler up` writes it).
pub fn credentials(file: Option<&Path>) -> Result<(String, String), String> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((id, secret));
    }
    let Some(path) = file else {
        return Err(
            "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and no credentials file (--credentials)"
                .into(),
        );
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
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

/// A client of the API `endpoint` names, signing with the environment's or the data dir's key.
pub fn connect(endpoint: &Endpoint) -> Result<Client, String> {
    let (key_id, secret) = credentials(Some(&endpoint.data_dir.join("credentials")))?;
    Client::new(&endpoint.endpoint, &key_id, &secret, &region())
}

/// A client for the unsigned endpoints (`/health`), which needs no key.
pub fn connect_unsigned(endpoint: &Endpoint) -> Result<Client, String> {
    Client::new(&endpoint.endpoint, "", "", &region())
}

fn region() -> String {
    std::env::var("AWS_DEFAULT_REGION")
        .or_else(|_| std::env::var("AWS_REGION"))
        .unwrap_or_else(|_| "us-east-1".into())
}
