//! Secret resources from an AWS Secrets Manager endpoint (`coupler up --secrets-manager aws`)
//! instead of the control plane's own store: `GetSecretValue` for each secret and stage at
//! deployment, signed with the core's AWS credentials, the endpoint from
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL` or the secret's region.

use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::aws::{self, Body, Service};
use crate::{SecretSource, SecretValue};

pub const SECRETS_MANAGER: Service = Service {
    signing_name: "secretsmanager",
    endpoint_prefix: "secretsmanager",
    env_name: "SECRETS_MANAGER",
};

/// Reads secrets from AWS Secrets Manager (or a compatible endpoint).
#[derive(Debug, Clone)]
pub struct AwsSecretsManager {
    /// For ARNs that name no region.
    region: String,
}

impl AwsSecretsManager {
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
        }
    }

    async fn get(&self, arn: &str, stage: &str) -> Result<Option<SecretValue>, String> {
        let region = aws::arn_region_and_resource(arn)
            .map(|(r, _)| r)
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.region);
        let client = aws::Client::new(SECRETS_MANAGER, region)?;
        let body = Body::Json {
            target: "secretsmanager.GetSecretValue".into(),
            body: json!({ "SecretId": arn, "VersionStage": stage })
                .to_string()
                .into_bytes(),
        };
        let text = match client.call(&body, &CancellationToken::new()).await {
            Ok(text) => text,
            Err(e) if e.code == "ResourceNotFoundException" => return Ok(None),
            Err(e) => return Err(format!("GetSecretValue at {}: {e}", client.endpoint())),
        };
        // The body holds the value: read it, never echo it.
        let reply: Value = serde_json::from_str(&text)
            .map_err(|_| "GetSecretValue: the reply is not JSON".to_owned())?;
        if let Some(s) = reply.get("SecretString").and_then(Value::as_str) {
            return Ok(Some(SecretValue::String(s.to_owned())));
        }
        match reply.get("SecretBinary").and_then(Value::as_str) {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(|b| Some(SecretValue::Binary(b)))
                .map_err(|_| "GetSecretValue: SecretBinary is not Base64".to_owned()),
            None => Err("GetSecretValue: the reply has no SecretString or SecretBinary".into()),
        }
    }
}

impl SecretSource for AwsSecretsManager {
    fn value(&self, arn: &str, stage: &str) -> Result<Option<SecretValue>, String> {
        // Deployments are prepared synchronously, maybe on a runtime thread: the call runs
        // on a thread and runtime of its own, and the deployment waits for it.
        std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("runtime for GetSecretValue: {e}"))?
                    .block_on(self.get(arn, stage))
            })
            .join()
            .unwrap_or_else(|_| Err("GetSecretValue panicked".into()))
        })
    }
}
