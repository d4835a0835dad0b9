//! The Secrets Manager subset of the control plane: `CreateSecret`, `PutSecretValue`,
//! `GetSecretValue`, `DescribeSecret`, `ListSecrets` and `DeleteSecret`, in the AWS JSON 1.1
//! protocol (`POST /`, `X-Amz-Target: secretsmanager.<Operation>`).
//!
//! A secret is one document in the `secrets` collection, keyed by name, holding its
//! metadata and its versions; every version's value is sealed with AES-256-GCM under the
//! [`SecretsKey`] (a random 96-bit nonce per value, the ARN and version id as associated data
//! so a sealed value cannot be moved to another secret or version). Keeping the versions in
//! the secret's document makes every stage move one atomic write.
//!
//! Values never reach a log or an error message: [`SecretValue`]'s `Debug` is redacted,
//! and decoding errors name the member, never its content.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use coupler_model::SecretValue;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::SecretsError;
use crate::store::{Op, Store};
use crate::wire::{BodyError, Identity};

type Result<T> = std::result::Result<T, SecretsError>;

/// The collection holding one document per secret, keyed by name.
const SECRETS: &str = "secrets";
pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
pub const AWSPENDING: &str = "AWSPENDING";
/// The environment variable naming a key file to use instead of `DATA_DIR/secrets.key`.
pub const KEY_FILE_ENV: &str = "COUPLER_SECRETS_KEY_FILE";
/// The key file's name in the data dir.
pub const KEY_FILE_NAME: &str = "secrets.key";
const MAX_VALUE_BYTES: usize = 65_536;
const MS_PER_DAY: i64 = 86_400_000;

// ---- the key -------------------------------------------------------------------------

/// Why the secrets key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: a secrets key file holds 64 hexadecimal characters or exactly 32 bytes")]
    Format { path: PathBuf },
}

/// The AES-256-GCM key that seals secret values at rest.
pub struct SecretsKey {
    cipher: Aes256Gcm,
    /// Where it came from, for messages (never the key itself).
    source: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl SecretsKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&(*key).into()),
            source: "bytes".into(),
        }
    }

    /// The key for a data dir: the file named by `COUPLER_SECRETS_KEY_FILE` if set (it must
    /// exist), else `DATA_DIR/secrets.key`, created with mode 0600 on first use.
    pub fn load_or_create(data_dir: &Path) -> std::result::Result<Self, KeyError> {
        match std::env::var_os(KEY_FILE_ENV) {
            Some(path) if !path.is_empty() => Self::from_file(Path::new(&path)),
            _ => {
                let path = data_dir.join(KEY_FILE_NAME);
                if !path.exists() {
                    create_key_file(&path)?;
                }
                Self::from_file(&path)
            }
        }
    }

    /// Read a key file: 64 hex characters (surrounding whitespace ignored), or 32 raw bytes.
    pub fn from_file(path: &Path) -> std::result::Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let key: [u8; 32] = match std::str::from_utf8(&bytes).map(str::trim) {
            Ok(text) if text.len() == 64 => hex::decode(text)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| KeyError::Format {
                    path: path.to_owned(),
                })?,
            _ => bytes.as_slice().try_into().map_err(|_| KeyError::Format {
                path: path.to_owned(),
            })?,
        };
        warn_if_shared(path);
        let mut k = Self::from_bytes(&key);
        k.source = path.display().to_string();
        Ok(k)
    }

    /// Seal `plaintext` under a fresh random nonce; the nonce is kept beside the ciphertext.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed> {
        let nonce_bytes: [u8; 12] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretsError::Internal("cannot seal a secret value".into()))?;
        Ok(Sealed {
            nonce: hex::encode(nonce_bytes),
            ciphertext: BASE64.encode(ciphertext),
        })
    }

    fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>> {
        // The message is deliberately vague: a wrong key and a tampered record look alike.
        let fail = || {
            SecretsError::Internal(
                "cannot open a stored secret value (wrong secrets key or damaged record)".into(),
            )
        };
        let nonce: [u8; 12] = hex::decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(fail)?;
        let ciphertext = BASE64.decode(&sealed.ciphertext).map_err(|_| fail())?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad,
                },
            )
            .map_err(|_| fail())
    }
}

fn create_key_file(path: &Path) -> std::result::Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let key: [u8; 32] = rand::random();
    // create_new: never overwrite a key that appeared meanwhile, which would orphan every
    // value sealed under it.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    writeln!(f, "{}", hex::encode(key)).map_err(io)?;
    f.sync_all().map_err(io)
}

fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the secrets key file is readable by other users; make it mode 0600");
    }
}

// ---- stored records ------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredVersion {
    id: String,
    stages: Vec<String>,
    created_ms: i64,
    /// Whether the value is `SecretBinary` rather than `SecretString`.
    binary: bool,
    sealed: Sealed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretRecord {
    arn: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    created_ms: i64,
    last_changed_ms: i64,
    #[serde(default)]
    last_accessed_ms: Option<i64>,
    /// When DeleteSecret was called.
    #[serde(default)]
    deleted_ms: Option<i64>,
    /// When the secret is gone for good (the end of its recovery window).
    #[serde(default)]
    deletion_ms: Option<i64>,
    versions: Vec<StoredVersion>,
}

impl SecretRecord {
    fn is_deleted(&self) -> bool {
        self.deleted_ms.is_some()
    }

    /// Past its recovery window: treated as absent, and overwritten by the next create.
    fn is_purged(&self, now: i64) -> bool {
        self.deletion_ms.is_some_and(|d| d <= now)
    }

    fn versions_to_stages(&self) -> Value {
        Value::Object(
            self.versions
                .iter()
                .map(|v| (v.id.clone(), json!(v.stages)))
                .collect(),
        )
    }

    /// The `SecretListEntry` / `DescribeSecret` fields they share.
    fn summary(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ARN".into(), json!(self.arn));
        m.insert("Name".into(), json!(self.name));
        if let Some(d) = &self.description {
            m.insert("Description".into(), json!(d));
        }
        if let Some(k) = &self.kms_key_id {
            m.insert("KmsKeyId".into(), json!(k));
        }
        m.insert("RotationEnabled".into(), json!(false));
        m.insert("LastChangedDate".into(), epoch(self.last_changed_ms));
        if let Some(t) = self.last_accessed_ms {
            m.insert("LastAccessedDate".into(), epoch(t));
        }
        if let Some(t) = self.deleted_ms {
            m.insert("DeletedDate".into(), epoch(t));
        }
        if !self.tags.is_empty() {
            m.insert("Tags".into(), json!(self.tags));
        }
        m.insert("CreatedDate".into(), epoch(self.created_ms));
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

/// JSON 1.1 timestamps are epoch seconds as a number.
fn epoch(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

// ---- the value, for Rust callers ---------------------------------------------------------

/// One version of a secret, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub stages: Vec<String>,
    pub created_ms: i64,
    pub value: SecretValue,
}

// ---- requests ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSecretRequest {
    name: String,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    add_replica_regions: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutSecretValueRequest {
    secret_id: String,
    client_request_token: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    version_stages: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValueRequest {
    secret_id: String,
    version_id: Option<String>,
    version_stage: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretIdRequest {
    secret_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteSecretRequest {
    secret_id: String,
    recovery_window_in_days: Option<i64>,
    force_delete_without_recovery: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListSecretsRequest {
    include_planned_deletion: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    filters: Vec<Filter>,
    sort_order: Option<String>,
    sort_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

/// Decode a request. A type error names the member only: serde's own message can quote the
/// offending value, which might be a secret.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    crate::wire::deserialize_body(body).map_err(|e| match e {
        BodyError::Syntax(_) => {
            SecretsError::Serialization("The request body is not valid JSON.".into())
        }
        // serde names the missing member, not a value.
        BodyError::Shape { path, error }
            if path == "." && error.to_string().starts_with("missing field") =>
        {
            SecretsError::InvalidParameter(error.to_string())
        }
        BodyError::Shape { path, .. } if path == "." => {
            SecretsError::Serialization("The request body must be a JSON object.".into())
        }
        BodyError::Shape { path, .. } => SecretsError::Serialization(format!(
            "The member {path} is missing or has the wrong type."
        )),
    })
}

/// The value in a create or put: exactly one of `SecretString` and `SecretBinary`.
fn payload(string: Option<String>, binary: Option<String>) -> Result<Option<SecretValue>> {
    let value = match (string, binary) {
        (Some(_), Some(_)) => {
            return Err(SecretsError::InvalidParameter(
                "You can't specify both a binary secret value and a string secret value in the same secret.".into(),
            ));
        }
        (Some(s), None) => SecretValue::String(s),
        (None, Some(b)) => SecretValue::Binary(BASE64.decode(b.as_bytes()).map_err(|_| {
            SecretsError::InvalidParameter("SecretBinary is not valid base64.".into())
        })?),
        (None, None) => return Ok(None),
    };
    let n = value.bytes().len();
    if n == 0 || n > MAX_VALUE_BYTES {
        return Err(SecretsError::InvalidParameter(format!(
            "The secret value must be 1 to {MAX_VALUE_BYTES} bytes long."
        )));
    }
    Ok(Some(value))
}

fn check_token(token: Option<String>) -> Result<String> {
    match token {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(t) if (32..=64).contains(&t.chars().count()) => Ok(t),
        Some(_) => Err(SecretsError::InvalidParameter(
            "ClientRequestToken must be 32 to 64 characters long.".into(),
        )),
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
    if name.is_empty() || name.len() > 512 || !name.chars().all(ok_char) {
        return Err(SecretsError::InvalidParameter(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!".into(),
        ));
    }
    Ok(())
}

fn check_stages(stages: &[String]) -> Result<()> {
    if stages.is_empty() || stages.len() > 20 {
        return Err(SecretsError::InvalidParameter(
            "VersionStages must list 1 to 20 staging labels.".into(),
        ));
    }
    if stages
        .iter()
        .any(|s| s.is_empty() || s.chars().count() > 256)
    {
        return Err(SecretsError::InvalidParameter(
            "A staging label must be 1 to 256 characters long.".into(),
        ));
    }
    Ok(())
}

fn check_tags(tags: &[Tag]) -> Result<()> {
    if tags.len() > 50 {
        return Err(SecretsError::InvalidParameter(
            "A secret can have at most 50 tags.".into(),
        ));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(SecretsError::InvalidParameter(
                "Tag keys must be 1 to 128 characters long and values at most 256.".into(),
            ));
        }
    }
    Ok(())
}

/// Six random letters and digits, the suffix AWS adds to a secret's name in its ARN.
fn arn_suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn aad(arn: &str, version_id: &str) -> Vec<u8> {
    format!("{arn}\n{version_id}").into_bytes()
}

fn not_found() -> SecretsError {
    SecretsError::ResourceNotFound("Secrets Manager can't find the specified secret.".into())
}

fn marked_for_deletion() -> SecretsError {
    SecretsError::InvalidRequest(
        "You can't perform this operation on the secret because it was marked for deletion.".into(),
    )
}

// ---- the service ---------------------------------------------------------------------

/// The Secrets Manager operations over the store.
pub struct Secrets {
    store: Arc<dyn Store>,
    identity: Identity,
    key: SecretsKey,
    /// Serialises read-modify-write sequences (stage moves) on secrets.
    write: Mutex<()>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("identity", &self.identity)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    pub fn new(store: Arc<dyn Store>, identity: Identity, key: SecretsKey) -> Self {
        Self {
            store,
            identity,
            key,
            write: Mutex::new(()),
        }
    }

    /// Run the operation named by `X-Amz-Target`'s part after `secretsmanager.`.
    pub fn dispatch(&self, operation: &str, body: &[u8]) -> Result<Value> {
        match operation {
            "CreateSecret" => self.create_secret(body),
            "PutSecretValue" => self.put_secret_value(body),
            "GetSecretValue" => self.get_secret_value(body),
            "DescribeSecret" => self.describe_secret(body),
            "ListSecrets" => self.list_secrets(body),
            "DeleteSecret" => self.delete_secret(body),
            other => Err(SecretsError::UnknownOperation(format!(
                "Operation secretsmanager.{other} is not supported by this control plane; see docs/secrets.md"
            ))),
        }
    }

    fn arn_prefix(&self) -> String {
        format!(
            "arn:aws:secretsmanager:{}:{}:secret:",
            self.identity.region, self.identity.account_id
        )
    }

    fn load(&self, name: &str) -> Result<Option<SecretRecord>> {
        match self.store.get(SECRETS, name)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| SecretsError::Internal(format!("stored secret record: {e}"))),
        }
    }

    fn save(&self, rec: &SecretRecord) -> Result<()> {
        let value = serde_json::to_vec(rec).map_err(|e| SecretsError::Internal(e.to_string()))?;
        self.store.write(&[Op::Put {
            collection: SECRETS.into(),
            key: rec.name.clone(),
            value,
        }])?;
        Ok(())
    }

    /// The secret a `SecretId` names: a name, a full ARN, or an ARN without the random
    /// suffix. Secrets past their recovery window do not exist.
    fn find(&self, secret_id: &str) -> Result<Option<SecretRecord>> {
        let now = now_ms();
        let live = |r: Option<SecretRecord>| r.filter(|r| !r.is_purged(now));
        let Some(rest) = secret_id.strip_prefix(&self.arn_prefix()) else {
            if secret_id.starts_with("arn:") {
                return Ok(None);
            }
            return Ok(live(self.load(secret_id)?));
        };
        // A full ARN: NAME-XXXXXX.
        if let Some(cut) = rest.len().checked_sub(7)
            && rest.is_char_boundary(cut)
            && rest[cut..].starts_with('-')
            && let Some(r) = live(self.load(&rest[..cut])?)
            && r.arn == secret_id
        {
            return Ok(Some(r));
        }
        // A partial ARN: the name itself.
        Ok(live(self.load(rest)?))
    }

    fn find_or_fail(&self, secret_id: &str) -> Result<SecretRecord> {
        self.find(secret_id)?.ok_or_else(not_found)
    }

    /// Add a version holding `value` with `stages`, moving those stages off other versions;
    /// a move of AWSCURRENT makes the old current version AWSPREVIOUS. Versions left
    /// without any stage are deprecated and dropped.
    fn add_version(
        &self,
        rec: &mut SecretRecord,
        id: &str,
        value: &SecretValue,
        stages: &[String],
        now: i64,
    ) -> Result<()> {
        let sealed = self.key.seal(&aad(&rec.arn, id), value.bytes())?;
        let moves_current = stages.iter().any(|s| s == AWSCURRENT);
        let old_current = rec
            .versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == AWSCURRENT))
            .map(|v| v.id.clone());
        for v in &mut rec.versions {
            v.stages.retain(|s| !stages.contains(s));
        }
        if moves_current && let Some(old) = old_current {
            for v in &mut rec.versions {
                v.stages.retain(|s| s != AWSPREVIOUS);
                if v.id == old {
                    v.stages.push(AWSPREVIOUS.into());
                }
            }
        }
        rec.versions.retain(|v| !v.stages.is_empty());
        let mut unique: Vec<String> = Vec::with_capacity(stages.len());
        for s in stages {
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        let stages = unique;
        rec.versions.push(StoredVersion {
            id: id.to_owned(),
            stages,
            created_ms: now,
            binary: matches!(value, SecretValue::Binary(_)),
            sealed,
        });
        rec.last_changed_ms = now;
        Ok(())
    }

    fn decrypt(&self, rec: &SecretRecord, v: &StoredVersion) -> Result<SecretValue> {
        let bytes = self.key.open(&aad(&rec.arn, &v.id), &v.sealed)?;
        if v.binary {
            Ok(SecretValue::Binary(bytes))
        } else {
            String::from_utf8(bytes)
                .map(SecretValue::String)
                .map_err(|_| SecretsError::Internal("a stored SecretString is not UTF-8".into()))
        }
    }

    /// A retry with a version id that exists: the same value is the same request (answered
    /// again), a different one is an attempt to change a version.
    fn same_version(&self, rec: &SecretRecord, id: &str, value: &SecretValue) -> Result<bool> {
        let Some(v) = rec.versions.iter().find(|v| v.id == id) else {
            return Ok(false);
        };
        if self.decrypt(rec, v)? == *value {
            Ok(true)
        } else {
            Err(SecretsError::ResourceExists(format!(
                "You can't modify an existing version; version {id} already exists with a different value."
            )))
        }
    }

    pub fn create_secret(&self, body: &[u8]) -> Result<Value> {
        let req: CreateSecretRequest = decode(body)?;
        check_name(&req.name)?;
        check_tags(&req.tags)?;
        if req
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2048)
        {
            return Err(SecretsError::InvalidParameter(
                "Description must be at most 2048 characters long.".into(),
            ));
        }
        if !req.add_replica_regions.is_empty() {
            return Err(SecretsError::InvalidRequest(
                "Replication to other regions is not supported by this control plane.".into(),
            ));
        }
        let token = check_token(req.client_request_token)?;
        let value = payload(req.secret_string, req.secret_binary)?;

        let _guard = self.write.lock();
        let now = now_ms();
        if let Some(existing) = self.load(&req.name)?.filter(|r| !r.is_purged(now)) {
            if existing.is_deleted() {
                return Err(SecretsError::InvalidRequest(format!(
                    "You can't create this secret because a secret with the name {} is already scheduled for deletion.",
                    req.name
                )));
            }
            // A retry of the same create (same token and value) gets the same answer.
            if let Some(v) = &value
                && self.same_version(&existing, &token, v)?
            {
                return Ok(json!({"ARN": existing.arn, "Name": existing.name, "VersionId": token}));
            }
            return Err(SecretsError::ResourceExists(format!(
                "The operation failed because the secret {} already exists.",
                req.name
            )));
        }
        let arn = format!("{}{}-{}", self.arn_prefix(), req.name, arn_suffix());
        let mut rec = SecretRecord {
            arn,
            name: req.name,
            description: req.description,
            kms_key_id: req.kms_key_id,
            tags: req.tags,
            created_ms: now,
            last_changed_ms: now,
            last_accessed_ms: None,
            deleted_ms: None,
            deletion_ms: None,
            versions: Vec::new(),
        };
        let mut answer = json!({"ARN": rec.arn, "Name": rec.name});
        if let Some(v) = &value {
            self.add_version(&mut rec, &token, v, &[AWSCURRENT.to_owned()], now)?;
            answer["VersionId"] = json!(token);
        }
        self.save(&rec)?;
        Ok(answer)
    }

    pub fn put_secret_value(&self, body: &[u8]) -> Result<Value> {
        let req: PutSecretValueRequest = decode(body)?;
        let token = check_token(req.client_request_token)?;
        let value = payload(req.secret_string, req.secret_binary)?.ok_or_else(|| {
            SecretsError::InvalidRequest(
                "You must provide either SecretString or SecretBinary.".into(),
            )
        })?;
        let stages = match req.version_stages {
            Some(s) => {
                check_stages(&s)?;
                s
            }
            None => vec![AWSCURRENT.to_owned()],
        };

        let _guard = self.write.lock();
        let mut rec = self.find_or_fail(&req.secret_id)?;
        if rec.is_deleted() {
            return Err(marked_for_deletion());
        }
        if self.same_version(&rec, &token, &value)? {
            let v = rec.versions.iter().find(|v| v.id == token);
            return Ok(json!({
                "ARN": rec.arn, "Name": rec.name, "VersionId": token,
                "VersionStages": v.map(|v| v.stages.clone()).unwrap_or_default(),
            }));
        }
        let now = now_ms();
        self.add_version(&mut rec, &token, &value, &stages, now)?;
        self.save(&rec)?;
        let stages = rec
            .versions
            .last()
            .map(|v| v.stages.clone())
            .unwrap_or_default();
        Ok(json!({"ARN": rec.arn, "Name": rec.name, "VersionId": token, "VersionStages": stages}))
    }

    pub fn get_secret_value(&self, body: &[u8]) -> Result<Value> {
        let req: GetSecretValueRequest = decode(body)?;
        let v = self.value_of(
            &req.secret_id,
            req.version_id.as_deref(),
            req.version_stage.as_deref(),
        )?;
        let mut m = Map::new();
        m.insert("ARN".into(), json!(v.arn));
        m.insert("Name".into(), json!(v.name));
        m.insert("VersionId".into(), json!(v.version_id));
        match &v.value {
            SecretValue::String(s) => m.insert("SecretString".into(), json!(s)),
            SecretValue::Binary(b) => m.insert("SecretBinary".into(), json!(BASE64.encode(b))),
        };
        m.insert("VersionStages".into(), json!(v.stages));
        m.insert("CreatedDate".into(), epoch(v.created_ms));
        Ok(Value::Object(m))
    }

    /// The value of a secret (by name, ARN or partial ARN) at `stage` (AWSCURRENT if none),
    /// for the core's deployment agent: `None` if the secret or the stage does not exist.
    /// A secret scheduled for deletion is an error, as for `GetSecretValue`.
    pub fn secret_value(
        &self,
        secret_id: &str,
        stage: Option<&str>,
    ) -> Result<Option<SecretVersion>> {
        match self.value_of(secret_id, None, stage) {
            Ok(v) => Ok(Some(v)),
            Err(SecretsError::ResourceNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn value_of(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<SecretVersion> {
        let _guard = self.write.lock();
        let mut rec = self.find_or_fail(secret_id)?;
        if rec.is_deleted() {
            return Err(marked_for_deletion());
        }
        let stage = match (version_id, stage) {
            (None, None) => Some(AWSCURRENT),
            (_, s) => s,
        };
        let v = rec
            .versions
            .iter()
            .find(|v| {
                version_id.is_none_or(|id| v.id == id)
                    && stage.is_none_or(|s| v.stages.iter().any(|t| t == s))
            })
            .ok_or_else(|| {
                SecretsError::ResourceNotFound(match (version_id, stage) {
                    (Some(id), _) => format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {id}"
                    ),
                    (None, s) => format!(
                        "Secrets Manager can't find the specified secret value for staging label: {}",
                        s.unwrap_or(AWSCURRENT)
                    ),
                })
            })?
            .clone();
        let value = self.decrypt(&rec, &v)?;
        // AWS keeps the access date to the day; one write per secret per day at most.
        let today = now_ms().div_euclid(MS_PER_DAY) * MS_PER_DAY;
        if rec.last_accessed_ms != Some(today) {
            rec.last_accessed_ms = Some(today);
            self.save(&rec)?;
        }
        Ok(SecretVersion {
            arn: rec.arn,
            name: rec.name,
            version_id: v.id,
            stages: v.stages,
            created_ms: v.created_ms,
            value,
        })
    }

    pub fn describe_secret(&self, body: &[u8]) -> Result<Value> {
        let req: SecretIdRequest = decode(body)?;
        let rec = self.find_or_fail(&req.secret_id)?;
        let mut m = rec.summary();
        m.insert("VersionIdsToStages".into(), rec.versions_to_stages());
        Ok(Value::Object(m))
    }

    pub fn list_secrets(&self, body: &[u8]) -> Result<Value> {
        let req: ListSecretsRequest = decode(body)?;
        let max = match req.max_results {
            None => 100,
            Some(n @ 1..=100) => n as usize,
            Some(_) => {
                return Err(SecretsError::InvalidParameter(
                    "MaxResults must be between 1 and 100.".into(),
                ));
            }
        };
        let start = match &req.next_token {
            None => 0,
            Some(t) => t.parse::<usize>().map_err(|_| {
                SecretsError::InvalidNextToken("The NextToken is not valid.".into())
            })?,
        };
        if req.filters.len() > 10 {
            return Err(SecretsError::InvalidParameter(
                "At most 10 filters are allowed.".into(),
            ));
        }
        for f in &req.filters {
            if !matches!(
                f.key.as_str(),
                "description"
                    | "name"
                    | "tag-key"
                    | "tag-value"
                    | "primary-region"
                    | "owning-service"
                    | "all"
            ) {
                return Err(SecretsError::InvalidParameter(format!(
                    "Unknown filter key {:?}.",
                    f.key
                )));
            }
            if f.values.is_empty() || f.values.len() > 10 {
                return Err(SecretsError::InvalidParameter(
                    "A filter takes 1 to 10 values.".into(),
                ));
            }
        }
        let include_deleted = req.include_planned_deletion.unwrap_or(false);
        let now = now_ms();
        // Listing is a scan: a control plane for edge devices holds few secrets, and a scan
        // lets any sort order page consistently.
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let items = self.store.list(SECRETS, after, 1000)?;
            for item in &items {
                let rec: SecretRecord = serde_json::from_slice(&item.value)
                    .map_err(|e| SecretsError::Internal(format!("stored secret record: {e}")))?;
                if rec.is_purged(now) || (rec.is_deleted() && !include_deleted) {
                    continue;
                }
                if req.filters.iter().all(|f| filter_matches(f, &rec)) {
                    all.push(rec);
                }
            }
            match items.last() {
                Some(last) if items.len() == 1000 => after = Some(last.seq),
                _ => break,
            }
        }
        let key = |r: &SecretRecord, o: &SecretRecord| -> Ordering {
            match req.sort_by.as_deref() {
                Some("name") => r.name.cmp(&o.name),
                Some("last-changed-date") => r.last_changed_ms.cmp(&o.last_changed_ms),
                Some("last-accessed-date") => r.last_accessed_ms.cmp(&o.last_accessed_ms),
                _ => r.created_ms.cmp(&o.created_ms),
            }
        };
        match req.sort_order.as_deref() {
            Some("desc") => all.sort_by(|a, b| key(b, a)),
            None | Some("asc") => all.sort_by(|a, b| key(a, b)),
            Some(_) => {
                return Err(SecretsError::InvalidParameter(
                    "SortOrder must be asc or desc.".into(),
                ));
            }
        }
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(max)
            .map(|r| {
                let mut m = r.summary();
                m.insert("SecretVersionsToStages".into(), r.versions_to_stages());
                Value::Object(m)
            })
            .collect();
        let mut out = Map::new();
        out.insert("SecretList".into(), Value::Array(page));
        if start + max < all.len() {
            out.insert("NextToken".into(), json!((start + max).to_string()));
        }
        Ok(Value::Object(out))
    }

    pub fn delete_secret(&self, body: &[u8]) -> Result<Value> {
        let req: DeleteSecretRequest = decode(body)?;
        let force = req.force_delete_without_recovery.unwrap_or(false);
        if force && req.recovery_window_in_days.is_some() {
            return Err(SecretsError::InvalidParameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.".into(),
            ));
        }
        let days = req.recovery_window_in_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(SecretsError::InvalidParameter(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).".into(),
            ));
        }
        let _guard = self.write.lock();
        let mut rec = self.find_or_fail(&req.secret_id)?;
        let now = now_ms();
        if force {
            self.store.write(&[Op::Delete {
                collection: SECRETS.into(),
                key: rec.name.clone(),
            }])?;
            return Ok(json!({"ARN": rec.arn, "Name": rec.name, "DeletionDate": epoch(now)}));
        }
        if rec.is_deleted() {
            return Err(marked_for_deletion());
        }
        let deletion = now + days * MS_PER_DAY;
        rec.deleted_ms = Some(now);
        rec.deletion_ms = Some(deletion);
        self.save(&rec)?;
        Ok(json!({"ARN": rec.arn, "Name": rec.name, "DeletionDate": epoch(deletion)}))
    }
}

/// A `ListSecrets` filter: any of its values matches by prefix (case-sensitive, except for
/// `all`); a value starting with `!` matches when no field starts with the rest.
fn filter_matches(f: &Filter, rec: &SecretRecord) -> bool {
    let fields: Vec<&str> = match f.key.as_str() {
        "name" => vec![&rec.name],
        "description" => rec.description.iter().map(String::as_str).collect(),
        "tag-key" => rec.tags.iter().map(|t| t.key.as_str()).collect(),
        "tag-value" => rec.tags.iter().map(|t| t.value.as_str()).collect(),
        "all" => std::iter::once(rec.name.as_str())
            .chain(rec.description.as_deref())
            .chain(
                rec.tags
                    .iter()
                    .flat_map(|t| [t.key.as_str(), t.value.as_str()]),
            )
            .collect(),
        // No replicas and no managing services here.
        _ => Vec::new(),
    };
    let fold = f.key == "all";
    let starts = |field: &str, prefix: &str| {
        if fold {
            field.to_lowercase().starts_with(&prefix.to_lowercase())
        } else {
            field.starts_with(prefix)
        }
    };
    f.values.iter().any(|v| match v.strip_prefix('!') {
        Some(neg) => !fields.iter().any(|x| starts(x, neg)),
        None => fields.iter().any(|x| starts(x, v)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::SqliteStore;

    const KEY: [u8; 32] = [7; 32];

    fn identity() -> Identity {
        Identity {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        }
    }

    fn secrets() -> Secrets {
        Secrets::new(
            Arc::new(SqliteStore::in_memory().unwrap()),
            identity(),
            SecretsKey::from_bytes(&KEY),
        )
    }

    fn call(s: &Secrets, op: &str, body: Value) -> Result<Value> {
        s.dispatch(op, &serde_json::to_vec(&body).unwrap())
    }

    fn stages(s: &Secrets, id: &str) -> BTreeMap<String, Vec<String>> {
        let d = call(s, "DescribeSecret", json!({"SecretId": id})).unwrap();
        d["VersionIdsToStages"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let mut st: Vec<String> = serde_json::from_value(v.clone()).unwrap();
                st.sort();
                (k.clone(), st)
            })
            .collect()
    }

    fn token(n: u8) -> String {
        format!("{n:0>32}")
    }

    #[test]
    fn sealing_round_trips_and_binds_the_associated_data() {
        let k = SecretsKey::from_bytes(&KEY);
        let a = k.seal(b"arn\nv1", b"hunter2").unwrap();
        let b = k.seal(b"arn\nv1", b"hunter2").unwrap();
        assert_ne!(a.nonce, b.nonce, "a fresh nonce per value");
        assert_eq!(k.open(b"arn\nv1", &a).unwrap(), b"hunter2");
        assert!(k.open(b"arn\nv2", &a).is_err(), "moved to another version");
        assert!(
            SecretsKey::from_bytes(&[8; 32])
                .open(b"arn\nv1", &a)
                .is_err()
        );
    }

    #[test]
    fn key_files_are_created_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let k1 = SecretsKey::from_file(&path).unwrap();
        let sealed = k1.seal(b"", b"v").unwrap();
        let k2 = SecretsKey::from_file(&path).unwrap();
        assert_eq!(k2.open(b"", &sealed).unwrap(), b"v");
        assert!(create_key_file(&path).is_err(), "never overwritten");
        // Raw 32 bytes work too; anything else is refused.
        let raw = dir.path().join("raw");
        std::fs::write(&raw, KEY).unwrap();
        SecretsKey::from_file(&raw).unwrap();
        std::fs::write(&raw, b"short").unwrap();
        assert!(matches!(
            SecretsKey::from_file(&raw),
            Err(KeyError::Format { .. })
        ));
        assert!(!format!("{k1:?}").contains(&hex::encode(KEY)));
    }

    #[test]
    fn values_are_not_stored_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cp.db");
        {
            let s = Secrets::new(
                Arc::new(SqliteStore::open(&db).unwrap()),
                identity(),
                SecretsKey::from_bytes(&KEY),
            );
            call(
                &s,
                "CreateSecret",
                json!({"Name": "db", "SecretString": "PLAINTEXT-MARKER-4711"}),
            )
            .unwrap();
            call(
                &s,
                "PutSecretValue",
                json!({"SecretId": "db", "SecretBinary": BASE64.encode(b"BINARY-MARKER-0815")}),
            )
            .unwrap();
            let v = s.secret_value("db", None).unwrap().unwrap();
            assert_eq!(v.value, SecretValue::Binary(b"BINARY-MARKER-0815".to_vec()));
        }
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"arn:aws:secretsmanager:"), "the records are there");
        assert!(!has(b"PLAINTEXT-MARKER-4711"));
        assert!(!has(b"BINARY-MARKER-0815"));
        assert!(!has(BASE64.encode(b"BINARY-MARKER-0815").as_bytes()));
    }

    #[test]
    fn arns_have_the_random_suffix_and_every_form_of_id_finds_the_secret() {
        let s = secrets();
        let c = call(
            &s,
            "CreateSecret",
            json!({"Name": "greengrass-x", "SecretString": "v"}),
        )
        .unwrap();
        let arn = c["ARN"].as_str().unwrap();
        let prefix = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-x-";
        let suffix = arn.strip_prefix(prefix).unwrap();
        assert_eq!(suffix.len(), 6);
        assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()));
        for id in [arn, "greengrass-x", prefix.trim_end_matches('-')] {
            let v = s.secret_value(id, None).unwrap().unwrap();
            assert_eq!(v.value, SecretValue::String("v".into()));
        }
        let wrong = format!("{prefix}AAAAAA");
        assert!(s.secret_value(&wrong, None).unwrap().is_none());
        assert!(s.secret_value("other", None).unwrap().is_none());
        assert!(matches!(
            call(&s, "DescribeSecret", json!({"SecretId": "other"})),
            Err(SecretsError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn putting_values_moves_the_stages() {
        let s = secrets();
        call(
            &s,
            "CreateSecret",
            json!({"Name": "n", "SecretString": "one", "ClientRequestToken": token(1)}),
        )
        .unwrap();
        call(
            &s,
            "PutSecretValue",
            json!({"SecretId": "n", "SecretString": "two", "ClientRequestToken": token(2)}),
        )
        .unwrap();
        let st = stages(&s, "n");
        assert_eq!(st[&token(1)], ["AWSPREVIOUS"]);
        assert_eq!(st[&token(2)], ["AWSCURRENT"]);

        // A pending value with a custom label: AWSCURRENT stays.
        let p = call(
            &s,
            "PutSecretValue",
            json!({"SecretId": "n", "SecretString": "three", "ClientRequestToken": token(3),
                   "VersionStages": ["AWSPENDING", "blue"]}),
        )
        .unwrap();
        assert_eq!(p["VersionStages"], json!(["AWSPENDING", "blue"]));
        let v = s.secret_value("n", None).unwrap().unwrap();
        assert_eq!(v.value, SecretValue::String("two".into()));
        let v = s.secret_value("n", Some("blue")).unwrap().unwrap();
        assert_eq!(v.version_id, token(3));
        assert!(s.secret_value("n", Some("green")).unwrap().is_none());

        // Moving "blue" alone leaves AWSPENDING where it was.
        call(
            &s,
            "PutSecretValue",
            json!({"SecretId": "n", "SecretString": "four", "ClientRequestToken": token(4),
                   "VersionStages": ["blue"]}),
        )
        .unwrap();
        let st = stages(&s, "n");
        assert_eq!(st[&token(3)], ["AWSPENDING"]);
        assert_eq!(st[&token(4)], ["blue"]);

        // A new current value: the old current becomes previous, the version that was
        // previous has no label left and is dropped.
        call(
            &s,
            "PutSecretValue",
            json!({"SecretId": "n", "SecretString": "five", "ClientRequestToken": token(5)}),
        )
        .unwrap();
        let st = stages(&s, "n");
        assert!(!st.contains_key(&token(1)));
        assert_eq!(st[&token(2)], ["AWSPREVIOUS"]);
        assert_eq!(st[&token(5)], ["AWSCURRENT"]);
        let v = call(
            &s,
            "GetSecretValue",
            json!({"SecretId": "n", "VersionStage": "AWSPREVIOUS"}),
        )
        .unwrap();
        assert_eq!(v["SecretString"], "two");
        assert!(matches!(
            call(
                &s,
                "GetSecretValue",
                json!({"SecretId": "n", "VersionId": token(1)})
            ),
            Err(SecretsError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn client_request_tokens_make_puts_idempotent() {
        let s = secrets();
        let c = json!({"Name": "n", "SecretString": "one", "ClientRequestToken": token(1)});
        let first = call(&s, "CreateSecret", c.clone()).unwrap();
        assert_eq!(
            call(&s, "CreateSecret", c).unwrap(),
            first,
            "a retried create"
        );
        let put = json!({"SecretId": "n", "SecretString": "two", "ClientRequestToken": token(2)});
        let a = call(&s, "PutSecretValue", put.clone()).unwrap();
        let b = call(&s, "PutSecretValue", put).unwrap();
        assert_eq!(a, b);
        assert_eq!(stages(&s, "n").len(), 2, "no third version");
        let err = call(
            &s,
            "PutSecretValue",
            json!({"SecretId": "n", "SecretString": "other", "ClientRequestToken": token(2)}),
        )
        .unwrap_err();
        assert!(matches!(err, SecretsError::ResourceExists(_)));
        assert!(
            !err.to_string().contains("other"),
            "no value in the message"
        );
        assert!(matches!(
            call(
                &s,
                "CreateSecret",
                json!({"Name": "n", "SecretString": "x"})
            ),
            Err(SecretsError::ResourceExists(_))
        ));
    }

    #[test]
    fn deletion_marks_the_secret_and_force_removes_it() {
        let s = secrets();
        call(
            &s,
            "CreateSecret",
            json!({"Name": "n", "SecretString": "v"}),
        )
        .unwrap();
        let d = call(
            &s,
            "DeleteSecret",
            json!({"SecretId": "n", "RecoveryWindowInDays": 7}),
        )
        .unwrap();
        assert!(d["DeletionDate"].as_f64().unwrap() > now_ms() as f64 / 1000.0 + 6.0 * 86400.0);
        assert!(matches!(
            s.secret_value("n", None),
            Err(SecretsError::InvalidRequest(_))
        ));
        let desc = call(&s, "DescribeSecret", json!({"SecretId": "n"})).unwrap();
        assert!(desc["DeletedDate"].is_number());
        let listed = call(&s, "ListSecrets", json!({})).unwrap();
        assert_eq!(listed["SecretList"], json!([]));
        let listed = call(&s, "ListSecrets", json!({"IncludePlannedDeletion": true})).unwrap();
        assert_eq!(listed["SecretList"].as_array().unwrap().len(), 1);
        assert!(matches!(
            call(&s, "CreateSecret", json!({"Name": "n"})),
            Err(SecretsError::InvalidRequest(_))
        ));
        call(
            &s,
            "DeleteSecret",
            json!({"SecretId": "n", "ForceDeleteWithoutRecovery": true}),
        )
        .unwrap();
        assert!(s.secret_value("n", None).unwrap().is_none());
        call(&s, "CreateSecret", json!({"Name": "n"})).unwrap();
        assert!(matches!(
            call(
                &s,
                "DeleteSecret",
                json!({"SecretId": "n", "RecoveryWindowInDays": 3})
            ),
            Err(SecretsError::InvalidParameter(_))
        ));
    }

    #[test]
    fn listing_pages_and_filters() {
        let s = secrets();
        for i in 0..5 {
            call(
                &s,
                "CreateSecret",
                json!({"Name": format!("app/{i}"), "Tags": [{"Key": "team", "Value": format!("t{}", i % 2)}]}),
            )
            .unwrap();
        }
        call(&s, "CreateSecret", json!({"Name": "other"})).unwrap();
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = json!({"MaxResults": 2});
            if let Some(t) = &token {
                req["NextToken"] = json!(t);
            }
            let page = call(&s, "ListSecrets", req).unwrap();
            for e in page["SecretList"].as_array().unwrap() {
                names.push(e["Name"].as_str().unwrap().to_owned());
            }
            match page["NextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            names,
            ["app/0", "app/1", "app/2", "app/3", "app/4", "other"]
        );
        let f = |filters: Value| {
            call(&s, "ListSecrets", json!({"Filters": filters})).unwrap()["SecretList"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["Name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(f(json!([{"Key": "name", "Values": ["oth"]}])), ["other"]);
        assert_eq!(
            f(json!([{"Key": "tag-value", "Values": ["t1"]}])),
            ["app/1", "app/3"]
        );
        assert_eq!(f(json!([{"Key": "name", "Values": ["!app"]}])), ["other"]);
        assert!(matches!(
            call(&s, "ListSecrets", json!({"NextToken": "x"})),
            Err(SecretsError::InvalidNextToken(_))
        ));
    }

    #[test]
    fn bad_requests_never_echo_values() {
        let s = secrets();
        let e = call(
            &s,
            "CreateSecret",
            json!({"Name": "n", "SecretString": "s3cr3t", "SecretBinary": "czNjcjN0"}),
        )
        .unwrap_err();
        assert!(matches!(e, SecretsError::InvalidParameter(_)));
        let e = s.dispatch("CreateSecret", br#""s3cr3t""#).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let e = s
            .dispatch(
                "CreateSecret",
                br#"{"Name": "n", "SecretString": 123456789}"#,
            )
            .unwrap_err();
        assert!(matches!(e, SecretsError::Serialization(_)));
        assert!(!e.to_string().contains("123456789"), "{e}");
        let e = s
            .dispatch(
                "CreateSecret",
                br#"{"Name": "n", "SecretBinary": "not base64 s3cr3t"}"#,
            )
            .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(matches!(
            call(
                &s,
                "PutSecretValue",
                json!({"SecretId": "nope", "SecretString": "x"})
            ),
            Err(SecretsError::ResourceNotFound(_))
        ));
        assert!(matches!(
            call(&s, "RotateSecret", json!({})),
            Err(SecretsError::UnknownOperation(_))
        ));
        let v = SecretValue::String("s3cr3t".into());
        assert!(!format!("{v:?}").contains("s3cr3t"));
    }
}
