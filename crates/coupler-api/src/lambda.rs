//! The Lambda subset of the control plane (REST, API version 2015-03-31): functions with zip
//! code, immutable published versions and aliases. `aws lambda …` and boto3 create the
//! functions a Greengrass group references; the core takes their code at deployment through
//! [`Lambda::code_for`].
//!
//! Storage, in the control plane's [`Store`]:
//!
//! * `lambda/functions`: one `FunctionRecord` per function, keyed by name: `$LATEST`'s
//!   configuration, the last version number handed out, and tags;
//! * `lambda/versions/NAME`: one `VersionRecord` per published version, keyed by number
//!   (insertion order is numeric order, as numbers only grow);
//! * `lambda/aliases/NAME`: one `AliasRecord` per alias, keyed by alias name;
//! * `lambda/code/NAME`: the zips as raw bytes, keyed by `CodeSha256`. Versions with the same
//!   code share one zip; a zip goes when nothing refers to it any more.
//!
//! Every change that touches several records is one atomic batch, under one write lock.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::LambdaError;
use crate::store::{Op, Store, StoreError};
use crate::wire::{BodyError, Identity};

type Result<T> = std::result::Result<T, LambdaError>;

const FUNCTIONS: &str = "lambda/functions";
pub const LATEST: &str = "$LATEST";
/// Function names: 1 to 64 letters, digits, hyphens and underscores.
pub const MAX_NAME_CHARS: usize = 64;
const MAX_QUALIFIER_CHARS: usize = 128;
const MAX_DESCRIPTION_CHARS: usize = 256;
const MAX_HANDLER_CHARS: usize = 128;
pub const DEFAULT_TIMEOUT_S: i64 = 3;
pub const MAX_TIMEOUT_S: i64 = 900;
pub const DEFAULT_MEMORY_MB: i64 = 128;
pub const MIN_MEMORY_MB: i64 = 128;
pub const MAX_MEMORY_MB: i64 = 10_240;
/// AWS's limit on all environment variables of a function together.
const MAX_ENVIRONMENT_BYTES: usize = 4096;
/// List operations answer at most this many items whatever `MaxItems` says, as AWS does.
pub const MAX_PAGE: usize = 50;
/// The largest `MaxItems` the model allows.
const MAX_ITEMS: u32 = 10_000;
/// Records read from the store per call when scanning a collection.
const SCAN_BATCH: usize = 256;

/// The model's `Runtime` enum: any of them is accepted; the core decides what it can run.
const RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "java8",
    "java8.al2",
    "java11",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "provided",
    "provided.al2",
    "nodejs18.x",
    "python3.10",
    "java17",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "python3.11",
    "nodejs20.x",
    "provided.al2023",
    "python3.12",
    "java21",
    "python3.13",
    "nodejs22.x",
    "nodejs24.x",
    "python3.14",
    "java25",
    "dotnet10",
    "ruby4.0",
];

const ARCHITECTURES: &[&str] = &["x86_64", "arm64"];

fn versions_collection(name: &str) -> String {
    format!("lambda/versions/{name}")
}

fn aliases_collection(name: &str) -> String {
    format!("lambda/aliases/{name}")
}

fn code_collection(name: &str) -> String {
    format!("lambda/code/{name}")
}

// ---- the interface of the core ----------------------------------------------------------

pub use coupler_model::function::FunctionCode;

/// Why [`Lambda::code_for`] has no code for an ARN; the message is meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionCodeError {
    #[error("{arn} is not a Lambda function ARN of this control plane: {why}")]
    NotAFunction { arn: String, why: String },
    #[error(
        "{arn} names no version or alias: Greengrass needs a qualified function ARN \
         (arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION or …:NAME:ALIAS)"
    )]
    Unqualified { arn: String },
    #[error("function {name} does not exist on this control plane")]
    NoSuchFunction { name: String },
    #[error("function {name} has no version or alias {qualifier}")]
    NoSuchQualifier { name: String, qualifier: String },
    #[error("the control plane cannot read function {name}: {detail}")]
    Storage { name: String, detail: String },
}

// ---- names, ARNs and qualifiers -------------------------------------------------------------

/// What a `FunctionName` names: the function and, if given, a qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
}

/// A qualifier, resolved to its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualifier {
    Latest,
    Version(u64),
    Alias(String),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn check_function_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !name.chars().all(is_name_char) {
        return Err(format!(
            "'{name}' is not a function name: 1 to {MAX_NAME_CHARS} letters, digits, hyphens \
             or underscores"
        ));
    }
    Ok(())
}

/// Parse a `FunctionName` the way Lambda takes it: `NAME`, `NAME:QUALIFIER`,
/// `ACCOUNT:function:NAME[:QUALIFIER]` or `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
/// An ARN must name this control plane's region and account.
pub fn parse_function_name(
    identity: &Identity,
    value: &str,
) -> std::result::Result<FunctionRef, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let check_account = |account: &str| {
        if account == identity.account_id {
            Ok(())
        } else {
            Err(format!(
                "account {account} is not this control plane's account {}",
                identity.account_id
            ))
        }
    };
    let (name, qualifier) = if value.starts_with("arn:") {
        let (partition, service, region, account, resource, name, qualifier) = match parts[..] {
            [_, p, s, r, a, f, n] => (p, s, r, a, f, n, None),
            [_, p, s, r, a, f, n, q] => (p, s, r, a, f, n, Some(q)),
            _ => {
                return Err(format!(
                    "'{value}' is not a function ARN \
                     (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])"
                ));
            }
        };
        if partition != "aws" || service != "lambda" || resource != "function" {
            return Err(format!(
                "'{value}' is not a function ARN \
                 (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])"
            ));
        }
        if region != identity.region {
            return Err(format!(
                "region {region:?} is not this control plane's region {}",
                identity.region
            ));
        }
        check_account(account)?;
        (name, qualifier)
    } else if parts.len() >= 3 && parts[1] == "function" {
        let (account, name, qualifier) = match parts[..] {
            [a, _, n] => (a, n, None),
            [a, _, n, q] => (a, n, Some(q)),
            _ => {
                return Err(format!(
                    "'{value}' is not a partial function ARN (ACCOUNT:function:NAME[:QUALIFIER])"
                ));
            }
        };
        check_account(account)?;
        (name, qualifier)
    } else {
        match parts[..] {
            [n] => (n, None),
            [n, q] => (n, Some(q)),
            _ => {
                return Err(format!(
                    "'{value}' is not a function name, ARN or partial ARN"
                ));
            }
        }
    };
    check_function_name(name)?;
    Ok(FunctionRef {
        name: name.to_owned(),
        qualifier: qualifier.map(str::to_owned),
    })
}

/// `$LATEST`, a version number, or an alias name.
pub fn parse_qualifier(q: &str) -> std::result::Result<Qualifier, String> {
    if q == LATEST {
        return Ok(Qualifier::Latest);
    }
    if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) {
        return q
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Qualifier::Version)
            .ok_or_else(|| format!("'{q}' is not a version number"));
    }
    check_alias_name(q)?;
    Ok(Qualifier::Alias(q.to_owned()))
}

fn check_alias_name(a: &str) -> std::result::Result<(), String> {
    if a.is_empty()
        || a.len() > MAX_QUALIFIER_CHARS
        || !a.chars().all(is_name_char)
        || a.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "'{a}' is not an alias name: 1 to {MAX_QUALIFIER_CHARS} letters, digits, hyphens or \
             underscores, not all digits"
        ));
    }
    Ok(())
}

/// `arn:(aws…)?:iam::ACCOUNT:role/NAME`, the model's pattern for `Role`.
fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    let partition_ok = partition.is_empty()
        || partition
            .strip_prefix("aws")
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_alphabetic() || c == '-'));
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some(path) = rest.strip_prefix("role") else {
        return false;
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    partition_ok
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c))
}

/// `2026-11-26T18:00:00.000+0000`, Lambda's `LastModified`.
pub fn last_modified(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn now() -> String {
    last_modified(time::OffsetDateTime::now_utc())
}

fn revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lambda's `CodeSha256`: the base64 SHA-256 of the zip.
pub fn code_sha256(zip: &[u8]) -> String {
    BASE64.encode(Sha256::digest(zip))
}

// ---- stored records ---------------------------------------------------------------------------

/// One configuration: `$LATEST`'s, or a published version's snapshot of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Config {
    runtime: String,
    role: String,
    handler: String,
    description: String,
    timeout: i64,
    memory_size: i64,
    #[serde(default)]
    environment: Option<BTreeMap<String, String>>,
    architectures: Vec<String>,
    code_sha256: String,
    code_size: u64,
    last_modified: String,
    revision_id: String,
}

impl Config {
    /// Whether publishing `self` would publish nothing new after `other`: the same code and
    /// settings (a version's own description aside).
    fn same_content(&self, other: &Config) -> bool {
        self.code_sha256 == other.code_sha256
            && self.runtime == other.runtime
            && self.role == other.role
            && self.handler == other.handler
            && self.timeout == other.timeout
            && self.memory_size == other.memory_size
            && self.environment == other.environment
            && self.architectures == other.architectures
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FunctionRecord {
    name: String,
    latest: Config,
    /// The last version number handed out; numbers are never reused, as in AWS.
    last_version: u64,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionRecord {
    version: u64,
    config: Config,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AliasRecord {
    name: String,
    /// `$LATEST` or a version number.
    function_version: String,
    description: String,
    revision_id: String,
}

// ---- requests ------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CodeRequest {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<Value>,
    #[serde(rename = "S3Key")]
    s3_key: Option<Value>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<Value>,
    image_uri: Option<Value>,
    #[serde(rename = "SourceKMSKeyArn")]
    source_kms_key_arn: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EnvironmentRequest {
    variables: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateFunctionRequest {
    function_name: Option<String>,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    code: Option<CodeRequest>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    publish: Option<bool>,
    package_type: Option<String>,
    environment: Option<EnvironmentRequest>,
    architectures: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    // Members of the model this control plane does not implement: refused unless empty.
    vpc_config: Option<Value>,
    dead_letter_config: Option<Value>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<Value>,
    tracing_config: Option<Value>,
    layers: Option<Value>,
    file_system_configs: Option<Value>,
    image_config: Option<Value>,
    code_signing_config_arn: Option<Value>,
    ephemeral_storage: Option<Value>,
    snap_start: Option<Value>,
    logging_config: Option<Value>,
    capacity_provider_config: Option<Value>,
    publish_to: Option<Value>,
    durable_config: Option<Value>,
    tenancy_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UpdateFunctionCodeRequest {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<Value>,
    #[serde(rename = "S3Key")]
    s3_key: Option<Value>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<Value>,
    image_uri: Option<Value>,
    publish: Option<bool>,
    dry_run: Option<bool>,
    revision_id: Option<String>,
    architectures: Option<Vec<String>>,
    #[serde(rename = "SourceKMSKeyArn")]
    source_kms_key_arn: Option<Value>,
    publish_to: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PublishVersionRequest {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
    publish_to: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateAliasRequest {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UpdateAliasRequest {
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<Value>,
    revision_id: Option<String>,
}

/// Decode a request body. Problems are `InvalidRequestContentException`, as Lambda answers a
/// body it cannot read; environment values are never quoted back.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    const PREFIX: &str = "Could not parse request body into json";
    // serde also reads a struct from a JSON array; a request is an object (or empty).
    if let Some(&first) = body.iter().find(|b| !b.is_ascii_whitespace())
        && first != b'{'
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(LambdaError::InvalidRequestContent(format!(
            "{PREFIX}: the body must be a JSON object of the operation's members"
        )));
    }
    crate::wire::deserialize_body(body).map_err(|e| {
        LambdaError::InvalidRequestContent(match e {
            BodyError::Syntax(e) => format!("{PREFIX}: {e}"),
            BodyError::Shape { path, error } => {
                let text = error.to_string();
                // serde lists every member it expected; the unknown one is what matters.
                let text = text.split(", expected one of").next().unwrap_or(&text);
                if path.starts_with("Environment") {
                    format!("{PREFIX}: {path}: environment variables are strings")
                } else if path == "." && !text.starts_with("unknown field") {
                    format!("{PREFIX}: the body must be a JSON object of the operation's members")
                } else if path == "." {
                    format!("{PREFIX}: {text}")
                } else {
                    format!("{PREFIX}: {path}: {text}")
                }
            }
        })
    })
}

fn invalid(message: impl Into<String>) -> LambdaError {
    LambdaError::InvalidParameterValue(message.into())
}

fn required<T>(value: Option<T>, member: &str) -> Result<T> {
    value.ok_or_else(|| invalid(format!("{member} is required.")))
}

/// A member given a value is refused: this control plane does not implement it. Empty
/// objects and lists (`{}`, `[]`) and null mean nothing and pass.
fn unsupported(members: &[(&str, &Option<Value>)]) -> Result<()> {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.values().all(empty),
            _ => false,
        }
    }
    for (name, value) in members {
        if let Some(v) = value
            && !empty(v)
        {
            return Err(invalid(format!(
                "{name} is not supported by this control plane (see docs/api.md)."
            )));
        }
    }
    Ok(())
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "Description: at most {MAX_DESCRIPTION_CHARS} characters."
        )));
    }
    Ok(())
}

fn check_architectures(a: Option<Vec<String>>) -> Result<Option<Vec<String>>> {
    match a {
        None => Ok(None),
        Some(a) if a.len() == 1 && ARCHITECTURES.contains(&a[0].as_str()) => Ok(Some(a)),
        Some(_) => Err(invalid(
            "Architectures: exactly one of x86_64 and arm64.".to_owned(),
        )),
    }
}

fn check_environment(env: Option<EnvironmentRequest>) -> Result<Option<BTreeMap<String, String>>> {
    let Some(vars) = env.and_then(|e| e.variables) else {
        return Ok(None);
    };
    let mut size = 0;
    for (k, v) in &vars {
        // The model's pattern: a letter, then at least one letter, digit or underscore.
        let mut chars = k.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.len() >= 2
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(format!(
                "Environment.Variables: '{k}' is not a variable name (a letter, then letters, \
                 digits or underscores; at least 2 characters)."
            )));
        }
        size += k.len() + v.len();
    }
    if size > MAX_ENVIRONMENT_BYTES {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment \
             variables you have provided exceeded the {}KB limit.",
            MAX_ENVIRONMENT_BYTES / 1024
        )));
    }
    Ok(Some(vars))
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > 50 {
        return Err(invalid("Tags: at most 50 tags."));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") {
            return Err(invalid(format!(
                "Tags: key '{k}' must be 1 to 128 characters and not start with aws:."
            )));
        }
        if v.chars().count() > 256 {
            return Err(invalid(format!(
                "Tags: the value of {k} is over 256 characters."
            )));
        }
    }
    Ok(())
}

/// The zip of a `ZipFile` member: base64, and an archive that opens and lists.
fn zip_bytes(
    member: &str,
    zip_file: Option<String>,
    other_sources: &[(&str, &Option<Value>)],
) -> Result<Vec<u8>> {
    if let Some((name, _)) = other_sources.iter().find(|(_, v)| v.is_some()) {
        return Err(invalid(format!(
            "{name}: this control plane takes function code only as ZipFile (the zip in the \
             request); S3Bucket, S3Key, S3ObjectVersion and ImageUri are not supported."
        )));
    }
    let Some(text) = zip_file else {
        return Err(invalid(format!(
            "{member} is required: this control plane takes function code only as a zip in the \
             request."
        )));
    };
    let bytes = BASE64.decode(text.as_bytes()).map_err(|_| {
        LambdaError::InvalidRequestContent(format!(
            "Could not parse request body into json: {member} is not valid base64."
        ))
    })?;
    check_zip(&bytes)?;
    Ok(bytes)
}

/// The archive must open, and its central directory and every local header must read.
fn check_zip(bytes: &[u8]) -> Result<()> {
    let unzip = || {
        invalid("Could not unzip uploaded file. Please check your file, then try to upload again.")
    };
    if bytes.is_empty() {
        return Err(invalid("Uploaded file must be a non-empty zip"));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|_| unzip())?;
    if archive.is_empty() {
        return Err(invalid("Uploaded file must be a non-empty zip"));
    }
    if archive.file_names().any(|n| n.is_err()) {
        return Err(unzip());
    }
    for i in 0..archive.len() {
        archive.by_index_raw(i).map_err(|_| unzip())?;
    }
    Ok(())
}

// ---- list pages ---------------------------------------------------------------------------

/// `MaxItems` and `Marker`, and the items of one page.
struct Pager {
    limit: usize,
    items: Vec<Value>,
    last: Option<String>,
    next: Option<String>,
}

impl Pager {
    fn new(query: &[(String, String)]) -> Result<Self> {
        let limit = match param(query, "MaxItems") {
            None => MAX_PAGE,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_ITEMS).contains(&n) => (n as usize).min(MAX_PAGE),
                _ => {
                    return Err(invalid(format!(
                        "MaxItems: '{s}' must be a number from 1 to {MAX_ITEMS}."
                    )));
                }
            },
        };
        Ok(Self {
            limit,
            items: Vec::new(),
            last: None,
            next: None,
        })
    }

    /// Add an item; `false` once the page is full (the item then starts the next page).
    fn push(&mut self, marker: String, item: Value) -> bool {
        if self.items.len() == self.limit {
            if self.next.is_none() {
                self.next = self.last.clone();
            }
            return false;
        }
        self.items.push(item);
        self.last = Some(marker);
        true
    }

    fn finish(self, member: &str) -> Value {
        let mut out = Map::new();
        if let Some(next) = self.next {
            out.insert("NextMarker".into(), json!(next));
        }
        out.insert(member.into(), Value::Array(self.items));
        Value::Object(out)
    }
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A marker this service issued: `N` or `N:M`, store positions.
fn parse_marker(marker: &str) -> Result<(i64, Option<i64>)> {
    let bad = || {
        invalid(format!(
            "Marker: '{marker}' is not a marker this service issued."
        ))
    };
    let num = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(bad);
    match marker.split_once(':') {
        None => Ok((num(marker)?, None)),
        Some((a, b)) => Ok((num(a)?, Some(num(b)?))),
    }
}

// ---- answers -------------------------------------------------------------------------------

/// A successful answer and its status.
#[derive(Debug)]
pub enum Answer {
    /// 200 with a JSON body.
    Ok(Value),
    /// 201 with a JSON body (the create and publish operations).
    Created(Value),
    /// 204, no body (the delete operations).
    NoContent,
    /// 200 with a zip (the code download).
    Zip(Vec<u8>),
}

// ---- the service -------------------------------------------------------------------------

/// The Lambda operations over the store.
pub struct Lambda {
    store: Arc<dyn Store>,
    identity: Identity,
    /// Serialises read-modify-write sequences, and code reads against the deletion of a zip.
    write: Mutex<()>,
}

impl std::fmt::Debug for Lambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lambda")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Lambda {
    pub fn new(store: Arc<dyn Store>, identity: Identity) -> Self {
        Self {
            store,
            identity,
            write: Mutex::new(()),
        }
    }

    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`.
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.identity.region, self.identity.account_id
        )
    }

    fn qualified_arn(&self, name: &str, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function_arn(name))
    }

    fn not_found(&self, name: &str, qualifier: Option<&str>) -> LambdaError {
        let arn = match qualifier {
            Some(q) => self.qualified_arn(name, q),
            None => self.function_arn(name),
        };
        LambdaError::ResourceNotFound(format!("Function not found: {arn}"))
    }

    fn function_ref(&self, value: &str) -> Result<FunctionRef> {
        parse_function_name(&self.identity, value)
            .map_err(|why| invalid(format!("FunctionName: {why}.")))
    }

    /// A `FunctionName` that may not carry a qualifier.
    fn unqualified(&self, value: &str) -> Result<String> {
        let r = self.function_ref(value)?;
        if r.qualifier.is_some() {
            return Err(invalid(format!(
                "FunctionName: '{value}' has a qualifier; this operation takes the function \
                 alone."
            )));
        }
        Ok(r.name)
    }

    /// The function and qualifier a `FunctionName` and an optional `Qualifier` name.
    fn qualified(&self, value: &str, query: Option<&str>) -> Result<(String, Option<String>)> {
        let r = self.function_ref(value)?;
        let qualifier = match (r.qualifier, query) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    "The derived qualifier from the function name does not match the specified \
                     qualifier.",
                ));
            }
            (a, b) => a.or_else(|| b.map(str::to_owned)),
        };
        Ok((r.name, qualifier))
    }

    fn get<T: DeserializeOwned>(&self, collection: &str, key: &str) -> Result<Option<T>> {
        match self.store.get(collection, key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LambdaError::Internal(format!("stored {collection}/{key}: {e}"))),
        }
    }

    fn function(&self, name: &str) -> Result<Option<FunctionRecord>> {
        self.get(FUNCTIONS, name)
    }

    fn function_or_404(&self, name: &str, qualifier: Option<&str>) -> Result<FunctionRecord> {
        self.function(name)?
            .ok_or_else(|| self.not_found(name, qualifier))
    }

    fn version(&self, name: &str, n: u64) -> Result<Option<VersionRecord>> {
        self.get(&versions_collection(name), &n.to_string())
    }

    fn alias(&self, name: &str, alias: &str) -> Result<Option<AliasRecord>> {
        self.get(&aliases_collection(name), alias)
    }

    fn alias_or_404(&self, name: &str, alias: &str) -> Result<AliasRecord> {
        self.alias(name, alias)?.ok_or_else(|| {
            LambdaError::ResourceNotFound(format!(
                "Alias not found: {}",
                self.qualified_arn(name, alias)
            ))
        })
    }

    /// Every record of a collection after position `after`, in order, until `each` says stop.
    fn scan<T: DeserializeOwned>(
        &self,
        collection: &str,
        mut after: Option<i64>,
        mut each: impl FnMut(i64, T) -> Result<bool>,
    ) -> Result<()> {
        loop {
            let items = self.store.list(collection, after, SCAN_BATCH)?;
            for item in &items {
                let v = serde_json::from_slice(&item.value).map_err(|e| {
                    LambdaError::Internal(format!("stored {collection}/{}: {e}", item.key))
                })?;
                if !each(item.seq, v)? {
                    return Ok(());
                }
            }
            match items.last() {
                Some(last) if items.len() == SCAN_BATCH => after = Some(last.seq),
                _ => return Ok(()),
            }
        }
    }

    fn versions(&self, name: &str) -> Result<Vec<(i64, VersionRecord)>> {
        let mut out = Vec::new();
        self.scan(&versions_collection(name), None, |seq, v| {
            out.push((seq, v));
            Ok(true)
        })?;
        Ok(out)
    }

    fn aliases(&self, name: &str) -> Result<Vec<(i64, AliasRecord)>> {
        let mut out = Vec::new();
        self.scan(&aliases_collection(name), None, |seq, a| {
            out.push((seq, a));
            Ok(true)
        })?;
        Ok(out)
    }

    /// The version a qualifier names and its configuration; `None` if there is none.
    fn resolve(&self, f: &FunctionRecord, q: &Qualifier) -> Result<Option<(String, Config)>> {
        match q {
            Qualifier::Latest => Ok(Some((LATEST.to_owned(), f.latest.clone()))),
            Qualifier::Version(n) => Ok(self
                .version(&f.name, *n)?
                .map(|v| (n.to_string(), v.config))),
            Qualifier::Alias(a) => match self.alias(&f.name, a)? {
                None => Ok(None),
                Some(alias) => match parse_qualifier(&alias.function_version) {
                    Ok(q @ (Qualifier::Latest | Qualifier::Version(_))) => self.resolve(f, &q),
                    _ => Err(LambdaError::Internal(format!(
                        "alias {a} of {} points at {:?}",
                        f.name, alias.function_version
                    ))),
                },
            },
        }
    }

    /// The function and the configuration a `FunctionName` (and `Qualifier`) name: the
    /// version it resolves to, and the ARN to answer with (unqualified when no qualifier was
    /// given, as AWS answers).
    fn lookup(
        &self,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(FunctionRecord, String, String, Config)> {
        let (name, qualifier) = self.qualified(function_name, qualifier)?;
        let q = match &qualifier {
            None => Qualifier::Latest,
            Some(q) => parse_qualifier(q).map_err(|why| invalid(format!("Qualifier: {why}.")))?,
        };
        let f = self.function_or_404(&name, qualifier.as_deref())?;
        let (version, config) = self
            .resolve(&f, &q)?
            .ok_or_else(|| self.not_found(&name, qualifier.as_deref()))?;
        let arn = match &qualifier {
            None => self.function_arn(&name),
            Some(q) => self.qualified_arn(&name, q),
        };
        Ok((f, arn, version, config))
    }

    fn code(&self, name: &str, sha: &str) -> Result<Vec<u8>> {
        self.store.get(&code_collection(name), sha)?.ok_or_else(|| {
            LambdaError::Internal(format!("the zip {sha} of function {name} is missing"))
        })
    }

    /// Whether any version other than `except`, or `$LATEST`, uses the zip `sha`.
    fn zip_in_use(&self, f: &FunctionRecord, sha: &str, except: Option<u64>) -> Result<bool> {
        if f.latest.code_sha256 == sha {
            return Ok(true);
        }
        Ok(self
            .versions(&f.name)?
            .iter()
            .any(|(_, v)| Some(v.version) != except && v.config.code_sha256 == sha))
    }

    /// `FunctionConfiguration`.
    fn configuration(&self, name: &str, arn: String, version: &str, c: &Config) -> Value {
        let mut m = Map::new();
        m.insert("FunctionName".into(), json!(name));
        m.insert("FunctionArn".into(), json!(arn));
        m.insert("Runtime".into(), json!(c.runtime));
        m.insert("Role".into(), json!(c.role));
        m.insert("Handler".into(), json!(c.handler));
        m.insert("CodeSize".into(), json!(c.code_size));
        m.insert("Description".into(), json!(c.description));
        m.insert("Timeout".into(), json!(c.timeout));
        m.insert("MemorySize".into(), json!(c.memory_size));
        m.insert("LastModified".into(), json!(c.last_modified));
        m.insert("CodeSha256".into(), json!(c.code_sha256));
        m.insert("Version".into(), json!(version));
        if let Some(vars) = &c.environment {
            m.insert("Environment".into(), json!({ "Variables": vars }));
        }
        m.insert("RevisionId".into(), json!(c.revision_id));
        m.insert("State".into(), json!("Active"));
        m.insert("LastUpdateStatus".into(), json!("Successful"));
        m.insert("PackageType".into(), json!("Zip"));
        m.insert("Architectures".into(), json!(c.architectures));
        Value::Object(m)
    }

    fn version_configuration(&self, name: &str, v: &VersionRecord) -> Value {
        let n = v.version.to_string();
        self.configuration(name, self.qualified_arn(name, &n), &n, &v.config)
    }

    fn alias_configuration(&self, function: &str, a: &AliasRecord) -> Value {
        json!({
            "AliasArn": self.qualified_arn(function, &a.name),
            "Name": a.name,
            "FunctionVersion": a.function_version,
            "Description": a.description,
            "RevisionId": a.revision_id,
        })
    }

    /// Publish `$LATEST` of `f` (updating `f`): the new version and the ops that store it, or
    /// the newest version and no ops when it already holds the same code and settings.
    fn publish(
        &self,
        f: &mut FunctionRecord,
        description: Option<String>,
    ) -> Result<(VersionRecord, Vec<Op>)> {
        if let Some((_, newest)) = self.versions(&f.name)?.pop()
            && newest.config.same_content(&f.latest)
        {
            return Ok((newest, Vec::new()));
        }
        f.last_version += 1;
        let mut config = f.latest.clone();
        if let Some(d) = description {
            config.description = d;
        }
        config.last_modified = now();
        config.revision_id = revision();
        let v = VersionRecord {
            version: f.last_version,
            config,
        };
        Ok((
            v.clone(),
            vec![Op::Insert {
                collection: versions_collection(&f.name),
                key: v.version.to_string(),
                value: to_vec(&v)?,
            }],
        ))
    }

    fn check_revision(current: &str, given: Option<&str>) -> Result<()> {
        match given {
            Some(r) if r != current => Err(LambdaError::PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. Call the \
                 GetFunction/GetAlias API to retrieve the latest Revision Id"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    // ---- operations ----

    /// `CreateFunction` (POST /2015-03-31/functions).
    pub fn create_function(&self, body: &[u8]) -> Result<Answer> {
        let req: CreateFunctionRequest = decode(body)?;
        unsupported(&[
            ("VpcConfig", &req.vpc_config),
            ("DeadLetterConfig", &req.dead_letter_config),
            ("KMSKeyArn", &req.kms_key_arn),
            ("TracingConfig", &req.tracing_config),
            ("Layers", &req.layers),
            ("FileSystemConfigs", &req.file_system_configs),
            ("ImageConfig", &req.image_config),
            ("CodeSigningConfigArn", &req.code_signing_config_arn),
            ("EphemeralStorage", &req.ephemeral_storage),
            ("SnapStart", &req.snap_start),
            ("LoggingConfig", &req.logging_config),
            ("CapacityProviderConfig", &req.capacity_provider_config),
            ("PublishTo", &req.publish_to),
            ("DurableConfig", &req.durable_config),
            ("TenancyConfig", &req.tenancy_config),
        ])?;
        let function_name = required(req.function_name, "FunctionName")?;
        let name = self.unqualified(&function_name)?;
        match req.package_type.as_deref() {
            None | Some("Zip") => {}
            Some("Image") => {
                return Err(invalid(
                    "PackageType: Image is not supported by this control plane; only Zip \
                     packages are.",
                ));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "PackageType: '{other}' is not Zip or Image."
                )));
            }
        }
        let role = required(req.role, "Role")?;
        if !is_role_arn(&role) {
            return Err(invalid(format!(
                "Role: '{role}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)."
            )));
        }
        let (Some(runtime), Some(handler)) = (req.runtime, req.handler) else {
            return Err(invalid(
                "Runtime and Handler are mandatory parameters for functions created with \
                 deployment packages.",
            ));
        };
        if !RUNTIMES.contains(&runtime.as_str()) {
            return Err(invalid(format!(
                "Runtime: '{runtime}' is not a Lambda runtime (python3.8, python3.12, \
                 nodejs20.x, java21, provided.al2023, …)."
            )));
        }
        if handler.is_empty()
            || handler.chars().count() > MAX_HANDLER_CHARS
            || handler.chars().any(char::is_whitespace)
        {
            return Err(invalid(format!(
                "Handler: '{handler}' must be 1 to {MAX_HANDLER_CHARS} characters without \
                 white space."
            )));
        }
        let description = req.description.unwrap_or_default();
        check_description(&description)?;
        let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
        if !(1..=MAX_TIMEOUT_S).contains(&timeout) {
            return Err(invalid(format!(
                "Timeout: {timeout} seconds; it must be from 1 to {MAX_TIMEOUT_S}."
            )));
        }
        let memory_size = req.memory_size.unwrap_or(DEFAULT_MEMORY_MB);
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&memory_size) {
            return Err(invalid(format!(
                "MemorySize: {memory_size} MB; it must be from {MIN_MEMORY_MB} to \
                 {MAX_MEMORY_MB}."
            )));
        }
        let environment = check_environment(req.environment)?;
        let architectures =
            check_architectures(req.architectures)?.unwrap_or_else(|| vec!["x86_64".to_owned()]);
        let tags = req.tags.unwrap_or_default();
        check_tags(&tags)?;
        let code = required(req.code, "Code")?;
        unsupported(&[("Code.SourceKMSKeyArn", &code.source_kms_key_arn)])?;
        let zip = zip_bytes(
            "Code.ZipFile",
            code.zip_file,
            &[
                ("Code.S3Bucket", &code.s3_bucket),
                ("Code.S3Key", &code.s3_key),
                ("Code.S3ObjectVersion", &code.s3_object_version),
                ("Code.ImageUri", &code.image_uri),
            ],
        )?;

        let _guard = self.write.lock();
        if self.function(&name)?.is_some() {
            return Err(LambdaError::ResourceConflict(format!(
                "Function already exist: {name}"
            )));
        }
        let sha = code_sha256(&zip);
        let mut f = FunctionRecord {
            name: name.clone(),
            latest: Config {
                runtime,
                role,
                handler,
                description,
                timeout,
                memory_size,
                environment,
                architectures,
                code_sha256: sha.clone(),
                code_size: zip.len() as u64,
                last_modified: now(),
                revision_id: revision(),
            },
            last_version: 0,
            tags,
        };
        let mut ops = vec![Op::Put {
            collection: code_collection(&name),
            key: sha,
            value: zip,
        }];
        let published = if req.publish.unwrap_or(false) {
            let (v, publish_ops) = self.publish(&mut f, None)?;
            ops.extend(publish_ops);
            Some(v)
        } else {
            None
        };
        ops.push(Op::Insert {
            collection: FUNCTIONS.into(),
            key: name.clone(),
            value: to_vec(&f)?,
        });
        self.store.write(&ops).map_err(|e| match e {
            StoreError::Exists { .. } => {
                LambdaError::ResourceConflict(format!("Function already exist: {name}"))
            }
            e => e.into(),
        })?;
        Ok(Answer::Created(match &published {
            Some(v) => self.version_configuration(&name, v),
            None => self.configuration(&name, self.function_arn(&name), LATEST, &f.latest),
        }))
    }

    /// `UpdateFunctionCode` (PUT /2015-03-31/functions/{FunctionName}/code).
    pub fn update_function_code(&self, function_name: &str, body: &[u8]) -> Result<Answer> {
        let req: UpdateFunctionCodeRequest = decode(body)?;
        unsupported(&[
            ("SourceKMSKeyArn", &req.source_kms_key_arn),
            ("PublishTo", &req.publish_to),
        ])?;
        let name = self.unqualified(function_name)?;
        let architectures = check_architectures(req.architectures)?;
        let zip = zip_bytes(
            "ZipFile",
            req.zip_file,
            &[
                ("S3Bucket", &req.s3_bucket),
                ("S3Key", &req.s3_key),
                ("S3ObjectVersion", &req.s3_object_version),
                ("ImageUri", &req.image_uri),
            ],
        )?;

        let _guard = self.write.lock();
        let mut f = self.function_or_404(&name, None)?;
        Self::check_revision(&f.latest.revision_id, req.revision_id.as_deref())?;
        let old_sha = f.latest.code_sha256.clone();
        let sha = code_sha256(&zip);
        f.latest.code_sha256 = sha.clone();
        f.latest.code_size = zip.len() as u64;
        if let Some(a) = architectures {
            f.latest.architectures = a;
        }
        f.latest.last_modified = now();
        f.latest.revision_id = revision();
        if req.dry_run.unwrap_or(false) {
            return Ok(Answer::Ok(self.configuration(
                &name,
                self.function_arn(&name),
                LATEST,
                &f.latest,
            )));
        }
        let mut ops = Vec::new();
        if sha != old_sha {
            ops.push(Op::Put {
                collection: code_collection(&name),
                key: sha,
                value: zip,
            });
            if !self.zip_in_use(&f, &old_sha, None)? {
                ops.push(Op::Delete {
                    collection: code_collection(&name),
                    key: old_sha,
                });
            }
        }
        let published = if req.publish.unwrap_or(false) {
            let (v, publish_ops) = self.publish(&mut f, None)?;
            ops.extend(publish_ops);
            Some(v)
        } else {
            None
        };
        ops.push(Op::Put {
            collection: FUNCTIONS.into(),
            key: name.clone(),
            value: to_vec(&f)?,
        });
        self.store.write(&ops)?;
        Ok(Answer::Ok(match &published {
            Some(v) => self.version_configuration(&name, v),
            None => self.configuration(&name, self.function_arn(&name), LATEST, &f.latest),
        }))
    }

    /// `PublishVersion` (POST /2015-03-31/functions/{FunctionName}/versions).
    pub fn publish_version(&self, function_name: &str, body: &[u8]) -> Result<Answer> {
        let req: PublishVersionRequest = decode(body)?;
        unsupported(&[("PublishTo", &req.publish_to)])?;
        let name = self.unqualified(function_name)?;
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        let _guard = self.write.lock();
        let mut f = self.function_or_404(&name, None)?;
        if let Some(sha) = &req.code_sha256
            && *sha != f.latest.code_sha256
        {
            return Err(invalid(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). \
                 Please try again with the CodeSHA256 in $LATEST.",
                f.latest.code_sha256
            )));
        }
        Self::check_revision(&f.latest.revision_id, req.revision_id.as_deref())?;
        let (v, mut ops) = self.publish(&mut f, req.description)?;
        if !ops.is_empty() {
            ops.push(Op::Put {
                collection: FUNCTIONS.into(),
                key: name.clone(),
                value: to_vec(&f)?,
            });
            self.store.write(&ops)?;
        }
        Ok(Answer::Created(self.version_configuration(&name, &v)))
    }

    /// `GetFunction` (GET /2015-03-31/functions/{FunctionName}?Qualifier=…). `base_url` is
    /// this endpoint as the client reached it; the code's `Location` is on it.
    pub fn get_function(
        &self,
        function_name: &str,
        qualifier: Option<&str>,
        base_url: &str,
    ) -> Result<Answer> {
        let (f, arn, version, config) = self.lookup(function_name, qualifier)?;
        let mut out = Map::new();
        out.insert(
            "Configuration".into(),
            self.configuration(&f.name, arn, &version, &config),
        );
        out.insert(
            "Code".into(),
            json!({
                "RepositoryType": "S3",
                "Location": format!("{base_url}{}", code_path(&f.name, &version)),
            }),
        );
        if !f.tags.is_empty() {
            out.insert("Tags".into(), json!(f.tags));
        }
        Ok(Answer::Ok(Value::Object(out)))
    }

    /// `GetFunctionConfiguration` (GET /2015-03-31/functions/{FunctionName}/configuration).
    pub fn get_function_configuration(
        &self,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<Answer> {
        let (f, arn, version, config) = self.lookup(function_name, qualifier)?;
        Ok(Answer::Ok(
            self.configuration(&f.name, arn, &version, &config),
        ))
    }

    /// The zip of a version (GET /2015-03-31/functions/{name}/versions/{version}/code-zip), the
    /// `Location` that [`Lambda::get_function`] gives.
    pub fn code_zip(&self, function_name: &str, version: &str) -> Result<Answer> {
        let _guard = self.write.lock();
        let (f, _, _, config) = self.lookup(function_name, Some(version))?;
        Ok(Answer::Zip(self.code(&f.name, &config.code_sha256)?))
    }

    /// `ListFunctions` (GET /2015-03-31/functions): `$LATEST` of each function, or with
    /// `FunctionVersion=ALL` every version too. The marker is `F` (after function position
    /// F) or `F:V` (inside function F, after version position V; 0 is `$LATEST`).
    pub fn list_functions(&self, query: &[(String, String)]) -> Result<Answer> {
        if param(query, "MasterRegion").is_some() {
            return Err(invalid(
                "MasterRegion is not supported by this control plane (no Lambda@Edge).",
            ));
        }
        let all = match param(query, "FunctionVersion") {
            None => false,
            Some("ALL") => true,
            Some(other) => {
                return Err(invalid(format!("FunctionVersion: '{other}' is not ALL.")));
            }
        };
        let mut pager = Pager::new(query)?;
        let marker = param(query, "Marker").map(parse_marker).transpose()?;
        // The entries of one function after version position `after` (None: from $LATEST).
        let entries = |pager: &mut Pager, seq: i64, f: &FunctionRecord, after: Option<i64>| {
            if !all {
                let c = self.configuration(&f.name, self.function_arn(&f.name), LATEST, &f.latest);
                return Ok::<bool, LambdaError>(pager.push(seq.to_string(), c));
            }
            if after.is_none() {
                let arn = self.qualified_arn(&f.name, LATEST);
                let c = self.configuration(&f.name, arn, LATEST, &f.latest);
                if !pager.push(format!("{seq}:0"), c) {
                    return Ok(false);
                }
            }
            let mut more = true;
            self.scan(
                &versions_collection(&f.name),
                after,
                |vseq, v: VersionRecord| {
                    more = pager.push(
                        format!("{seq}:{vseq}"),
                        self.version_configuration(&f.name, &v),
                    );
                    Ok(more)
                },
            )?;
            Ok(more)
        };
        let mut after = None;
        if let Some((fseq, inside)) = marker {
            after = Some(fseq);
            // Resume inside the function the last page ended in, if it is still there.
            if all
                && let Some(vseq) = inside
                && let Some(item) = self.store.list(FUNCTIONS, Some(fseq - 1), 1)?.pop()
                && item.seq == fseq
            {
                let f: FunctionRecord = serde_json::from_slice(&item.value)
                    .map_err(|e| LambdaError::Internal(format!("stored function: {e}")))?;
                if !entries(&mut pager, fseq, &f, Some(vseq))? {
                    return Ok(Answer::Ok(pager.finish("Functions")));
                }
            }
        }
        self.scan(FUNCTIONS, after, |seq, f: FunctionRecord| {
            entries(&mut pager, seq, &f, None)
        })?;
        Ok(Answer::Ok(pager.finish("Functions")))
    }

    /// `ListVersionsByFunction` (GET /2015-03-31/functions/{FunctionName}/versions): `$LATEST`
    /// and then every published version. The marker is a version's position (0: `$LATEST`).
    pub fn list_versions_by_function(
        &self,
        function_name: &str,
        query: &[(String, String)],
    ) -> Result<Answer> {
        let name = self.unqualified(function_name)?;
        let mut pager = Pager::new(query)?;
        let after = match param(query, "Marker").map(parse_marker).transpose()? {
            Some((v, None)) => Some(v),
            Some((_, Some(_))) => {
                return Err(invalid("Marker: not a marker this operation issued."));
            }
            None => None,
        };
        let f = self.function_or_404(&name, None)?;
        if after.is_none() {
            let arn = self.qualified_arn(&name, LATEST);
            pager.push(
                "0".into(),
                self.configuration(&name, arn, LATEST, &f.latest),
            );
        }
        self.scan(
            &versions_collection(&name),
            after,
            |seq, v: VersionRecord| {
                Ok(pager.push(seq.to_string(), self.version_configuration(&name, &v)))
            },
        )?;
        Ok(Answer::Ok(pager.finish("Versions")))
    }

    /// `DeleteFunction` (DELETE /2015-03-31/functions/{FunctionName}?Qualifier=…): the whole
    /// function with its versions, aliases and code, or one version.
    pub fn delete_function(&self, function_name: &str, qualifier: Option<&str>) -> Result<Answer> {
        let (name, qualifier) = self.qualified(function_name, qualifier)?;
        let q = qualifier
            .as_deref()
            .map(|q| parse_qualifier(q).map_err(|why| invalid(format!("Qualifier: {why}."))))
            .transpose()?;
        let _guard = self.write.lock();
        let f = self.function_or_404(&name, qualifier.as_deref())?;
        match q {
            None => {
                self.store.write(&[
                    Op::Delete {
                        collection: FUNCTIONS.into(),
                        key: name.clone(),
                    },
                    Op::DeleteCollection {
                        collection: versions_collection(&name),
                    },
                    Op::DeleteCollection {
                        collection: aliases_collection(&name),
                    },
                    Op::DeleteCollection {
                        collection: code_collection(&name),
                    },
                ])?;
            }
            Some(Qualifier::Latest) => {
                return Err(invalid(
                    "$LATEST version cannot be deleted without deleting the function.",
                ));
            }
            Some(Qualifier::Alias(a)) => {
                return Err(invalid(format!(
                    "Qualifier: '{a}' is not a version number; delete an alias with DeleteAlias."
                )));
            }
            Some(Qualifier::Version(n)) => {
                let Some(v) = self.version(&name, n)? else {
                    return Err(self.not_found(&name, Some(&n.to_string())));
                };
                let users: Vec<String> = self
                    .aliases(&name)?
                    .into_iter()
                    .filter(|(_, a)| a.function_version == n.to_string())
                    .map(|(_, a)| a.name)
                    .collect();
                if !users.is_empty() {
                    return Err(LambdaError::ResourceConflict(format!(
                        "Unable to delete version because the following aliases reference it: [{}]",
                        users.join(", ")
                    )));
                }
                let mut ops = vec![Op::Delete {
                    collection: versions_collection(&name),
                    key: n.to_string(),
                }];
                if !self.zip_in_use(&f, &v.config.code_sha256, Some(n))? {
                    ops.push(Op::Delete {
                        collection: code_collection(&name),
                        key: v.config.code_sha256,
                    });
                }
                self.store.write(&ops)?;
            }
        }
        Ok(Answer::NoContent)
    }

    /// Check an alias's target version exists; `$LATEST` always does.
    fn check_target(&self, name: &str, version: &str) -> Result<()> {
        match parse_qualifier(version) {
            Ok(Qualifier::Latest) => Ok(()),
            Ok(Qualifier::Version(n)) => match self.version(name, n)? {
                Some(_) => Ok(()),
                None => Err(self.not_found(name, Some(version))),
            },
            _ => Err(invalid(format!(
                "FunctionVersion: '{version}' is not $LATEST or a version number."
            ))),
        }
    }

    fn alias_path_name(alias: &str) -> Result<()> {
        check_alias_name(alias).map_err(|why| invalid(format!("Name: {why}.")))
    }

    /// `CreateAlias` (POST /2015-03-31/functions/{FunctionName}/aliases).
    pub fn create_alias(&self, function_name: &str, body: &[u8]) -> Result<Answer> {
        let req: CreateAliasRequest = decode(body)?;
        unsupported(&[("RoutingConfig", &req.routing_config)])?;
        let name = self.unqualified(function_name)?;
        let alias = required(req.name, "Name")?;
        Self::alias_path_name(&alias)?;
        let version = required(req.function_version, "FunctionVersion")?;
        let description = req.description.unwrap_or_default();
        check_description(&description)?;
        let _guard = self.write.lock();
        self.function_or_404(&name, None)?;
        self.check_target(&name, &version)?;
        if self.alias(&name, &alias)?.is_some() {
            return Err(LambdaError::ResourceConflict(format!(
                "Alias already exists: {}",
                self.qualified_arn(&name, &alias)
            )));
        }
        let a = AliasRecord {
            name: alias.clone(),
            function_version: version,
            description,
            revision_id: revision(),
        };
        self.store.write(&[Op::Insert {
            collection: aliases_collection(&name),
            key: alias,
            value: to_vec(&a)?,
        }])?;
        Ok(Answer::Created(self.alias_configuration(&name, &a)))
    }

    /// `UpdateAlias` (PUT /2015-03-31/functions/{FunctionName}/aliases/{Name}).
    pub fn update_alias(&self, function_name: &str, alias: &str, body: &[u8]) -> Result<Answer> {
        let req: UpdateAliasRequest = decode(body)?;
        unsupported(&[("RoutingConfig", &req.routing_config)])?;
        let name = self.unqualified(function_name)?;
        Self::alias_path_name(alias)?;
        if let Some(d) = &req.description {
            check_description(d)?;
        }
        let _guard = self.write.lock();
        self.function_or_404(&name, None)?;
        let mut a = self.alias_or_404(&name, alias)?;
        Self::check_revision(&a.revision_id, req.revision_id.as_deref())?;
        if let Some(v) = req.function_version {
            self.check_target(&name, &v)?;
            a.function_version = v;
        }
        if let Some(d) = req.description {
            a.description = d;
        }
        a.revision_id = revision();
        self.store.write(&[Op::Put {
            collection: aliases_collection(&name),
            key: alias.to_owned(),
            value: to_vec(&a)?,
        }])?;
        Ok(Answer::Ok(self.alias_configuration(&name, &a)))
    }

    /// `GetAlias` (GET /2015-03-31/functions/{FunctionName}/aliases/{Name}).
    pub fn get_alias(&self, function_name: &str, alias: &str) -> Result<Answer> {
        let name = self.unqualified(function_name)?;
        Self::alias_path_name(alias)?;
        self.function_or_404(&name, None)?;
        let a = self.alias_or_404(&name, alias)?;
        Ok(Answer::Ok(self.alias_configuration(&name, &a)))
    }

    /// `ListAliases` (GET /2015-03-31/functions/{FunctionName}/aliases), optionally only
    /// those pointing at `FunctionVersion`.
    pub fn list_aliases(&self, function_name: &str, query: &[(String, String)]) -> Result<Answer> {
        let name = self.unqualified(function_name)?;
        let mut pager = Pager::new(query)?;
        let after = match param(query, "Marker").map(parse_marker).transpose()? {
            Some((a, None)) => Some(a),
            Some((_, Some(_))) => {
                return Err(invalid("Marker: not a marker this operation issued."));
            }
            None => None,
        };
        let only = param(query, "FunctionVersion");
        self.function_or_404(&name, None)?;
        self.scan(&aliases_collection(&name), after, |seq, a: AliasRecord| {
            if only.is_some_and(|v| v != a.function_version) {
                return Ok(true);
            }
            Ok(pager.push(seq.to_string(), self.alias_configuration(&name, &a)))
        })?;
        Ok(Answer::Ok(pager.finish("Aliases")))
    }

    /// `DeleteAlias` (DELETE /2015-03-31/functions/{FunctionName}/aliases/{Name}). Deleting an
    /// alias that does not exist succeeds, as the model declares no not-found error for it.
    pub fn delete_alias(&self, function_name: &str, alias: &str) -> Result<Answer> {
        let name = self.unqualified(function_name)?;
        Self::alias_path_name(alias)?;
        let _guard = self.write.lock();
        self.function_or_404(&name, None)?;
        self.store.write(&[Op::Delete {
            collection: aliases_collection(&name),
            key: alias.to_owned(),
        }])?;
        Ok(Answer::NoContent)
    }

    // ---- for the core ----

    /// The code of the function version or alias a qualified ARN names, for the core's
    /// function host at deployment. `$LATEST` resolves too (Greengrass itself refuses it).
    pub fn code_for(&self, arn: &str) -> std::result::Result<FunctionCode, FunctionCodeError> {
        let r = parse_function_name(&self.identity, arn).map_err(|why| {
            FunctionCodeError::NotAFunction {
                arn: arn.to_owned(),
                why,
            }
        })?;
        let Some(qualifier) = r.qualifier else {
            return Err(FunctionCodeError::Unqualified {
                arn: arn.to_owned(),
            });
        };
        let name = r.name;
        let no_such_qualifier = || FunctionCodeError::NoSuchQualifier {
            name: name.clone(),
            qualifier: qualifier.clone(),
        };
        let storage = |e: LambdaError| FunctionCodeError::Storage {
            name: name.clone(),
            detail: e.to_string(),
        };
        let q = parse_qualifier(&qualifier).map_err(|_| no_such_qualifier())?;
        let _guard = self.write.lock();
        let f = self
            .function(&name)
            .map_err(storage)?
            .ok_or_else(|| FunctionCodeError::NoSuchFunction { name: name.clone() })?;
        let (version, config) = self
            .resolve(&f, &q)
            .map_err(storage)?
            .ok_or_else(no_such_qualifier)?;
        let zip = self.code(&name, &config.code_sha256).map_err(storage)?;
        Ok(FunctionCode {
            version_arn: self.qualified_arn(&name, &version),
            runtime: config.runtime,
            handler: config.handler,
            code_sha256: config.code_sha256,
            zip,
        })
    }
}

/// The path of a version's zip on this endpoint (`$` of `$LATEST` percent-encoded).
pub fn code_path(name: &str, version: &str) -> String {
    format!(
        "/2015-03-31/functions/{name}/versions/{}/code-zip",
        version.replace('$', "%24")
    )
}

fn to_vec<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| LambdaError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::store::SqliteStore;

    const ACCOUNT: &str = "123456789012";
    const ROLE: &str = "arn:aws:iam::123456789012:role/lambda-role";

    fn identity() -> Identity {
        Identity {
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
        }
    }

    fn lambda() -> (Lambda, Arc<SqliteStore>) {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        (Lambda::new(store.clone(), identity()), store)
    }

    fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(text.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn code(text: &str) -> Vec<u8> {
        zip_of(&[("app.py", text)])
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn value(a: Answer) -> Value {
        match a {
            Answer::Ok(v) | Answer::Created(v) => v,
            other => panic!("expected a JSON answer, got {other:?}"),
        }
    }

    fn create(l: &Lambda, name: &str, zip: &[u8], publish: bool) -> Value {
        value(
            l.create_function(&body(json!({
                "FunctionName": name, "Runtime": "python3.12", "Role": ROLE,
                "Handler": "app.handler", "Code": {"ZipFile": BASE64.encode(zip)},
                "Publish": publish,
            })))
            .unwrap(),
        )
    }

    fn update(l: &Lambda, name: &str, zip: &[u8], publish: bool) -> Value {
        value(
            l.update_function_code(
                name,
                &body(json!({"ZipFile": BASE64.encode(zip), "Publish": publish})),
            )
            .unwrap(),
        )
    }

    fn arn(rest: &str) -> String {
        format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{rest}")
    }

    #[test]
    fn function_names_arns_and_partial_arns_parse() {
        let id = identity();
        let p = |s: &str| parse_function_name(&id, s);
        let r = |name: &str, q: Option<&str>| FunctionRef {
            name: name.into(),
            qualifier: q.map(Into::into),
        };
        assert_eq!(p("Temp").unwrap(), r("Temp", None));
        assert_eq!(p("Temp:live").unwrap(), r("Temp", Some("live")));
        assert_eq!(p(&arn("Temp")).unwrap(), r("Temp", None));
        assert_eq!(p(&arn("Temp:3")).unwrap(), r("Temp", Some("3")));
        assert_eq!(p(&arn("Temp:$LATEST")).unwrap(), r("Temp", Some("$LATEST")));
        assert_eq!(
            p(&format!("{ACCOUNT}:function:Temp")).unwrap(),
            r("Temp", None)
        );
        assert_eq!(
            p(&format!("{ACCOUNT}:function:Temp:1")).unwrap(),
            r("Temp", Some("1"))
        );
        let e = p("arn:aws:lambda:eu-west-1:123456789012:function:Temp").unwrap_err();
        assert!(e.contains("region \"eu-west-1\""), "{e}");
        let e = p("arn:aws:lambda:us-east-1:999999999999:function:Temp").unwrap_err();
        assert!(e.contains("account 999999999999"), "{e}");
        assert!(p("999999999999:function:Temp").is_err());
        for bad in [
            "",
            "has space",
            "a.b",
            &"x".repeat(65),
            "a:b:c",
            "arn:aws:lambda:us-east-1:123456789012:layer:x",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:lambda:::function:GGIPDetector:1",
        ] {
            assert!(p(bad).is_err(), "{bad:?} parsed");
        }
        assert!(p(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn qualifiers_are_latest_versions_or_aliases() {
        assert_eq!(parse_qualifier("$LATEST"), Ok(Qualifier::Latest));
        assert_eq!(parse_qualifier("3"), Ok(Qualifier::Version(3)));
        assert_eq!(parse_qualifier("live"), Ok(Qualifier::Alias("live".into())));
        assert_eq!(
            parse_qualifier("v1_2-3"),
            Ok(Qualifier::Alias("v1_2-3".into()))
        );
        for bad in ["0", "", "$latest", "a b", "99999999999999999999999"] {
            assert!(parse_qualifier(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_timestamps_and_hashes() {
        assert!(is_role_arn(ROLE));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/to/r"));
        for bad in [
            "role",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_795_716_000_123_000_000).unwrap();
        assert_eq!(last_modified(t), "2026-11-26T18:00:00.123+0000");
        // `echo -n abc | sha256sum | xxd -r -p | base64`
        assert_eq!(
            code_sha256(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn zips_must_open_and_list() {
        check_zip(&code("x")).unwrap();
        let unzip =
            "Could not unzip uploaded file. Please check your file, then try to upload again.";
        let is = |r: Result<()>, text: &str| matches!(r, Err(LambdaError::InvalidParameterValue(m)) if m == text);
        assert!(is(check_zip(b"not a zip at all"), unzip));
        let mut truncated = code("hello");
        truncated.truncate(truncated.len() - 10);
        assert!(is(check_zip(&truncated), unzip));
        // The central directory is intact but the local header it points at is garbage.
        let mut damaged = code("hello");
        damaged[0..4].copy_from_slice(b"XXXX");
        assert!(is(check_zip(&damaged), unzip));
        assert!(is(check_zip(b""), "Uploaded file must be a non-empty zip"));
        assert!(is(
            check_zip(&zip_of(&[])),
            "Uploaded file must be a non-empty zip"
        ));
    }

    #[test]
    fn create_publish_alias_and_resolve_code_for_the_core() {
        let (l, _) = lambda();
        let one = code("one");
        let c = create(&l, "Temp", &one, false);
        assert_eq!(c["FunctionArn"], arn("Temp"));
        assert_eq!(c["Version"], "$LATEST");
        assert_eq!(c["Timeout"], 3);
        assert_eq!(c["MemorySize"], 128);
        assert_eq!(c["CodeSha256"], code_sha256(&one));
        assert_eq!(c["CodeSize"], one.len());
        assert_eq!(c["State"], "Active");

        let v1 = value(l.publish_version("Temp", b"").unwrap());
        assert_eq!(
            (v1["Version"].as_str(), v1["FunctionArn"].as_str()),
            (Some("1"), Some(arn("Temp:1").as_str()))
        );
        let again = value(l.publish_version("Temp", b"{}").unwrap());
        assert_eq!(again["Version"], "1", "nothing changed: the same version");

        let two = code("two");
        let v2 = update(&l, "Temp", &two, true);
        assert_eq!(v2["Version"], "2");
        assert_eq!(v2["CodeSha256"], code_sha256(&two));

        value(
            l.create_alias(
                "Temp",
                &body(json!({"Name": "live", "FunctionVersion": "1"})),
            )
            .unwrap(),
        );
        let got = l.code_for(&arn("Temp:live")).unwrap();
        assert_eq!(got.version_arn, arn("Temp:1"));
        assert_eq!(got.zip, one);
        assert_eq!(got.code_sha256, code_sha256(&one));
        assert_eq!(
            (got.runtime.as_str(), got.handler.as_str()),
            ("python3.12", "app.handler")
        );
        assert_eq!(l.code_for(&arn("Temp:2")).unwrap().zip, two);
        let latest = l.code_for(&arn("Temp:$LATEST")).unwrap();
        assert_eq!(latest.version_arn, arn("Temp:$LATEST"));
        assert_eq!(latest.zip, two);

        // Moving the alias moves what the core gets.
        l.update_alias("Temp", "live", &body(json!({"FunctionVersion": "2"})))
            .unwrap();
        assert_eq!(
            l.code_for(&arn("Temp:live")).unwrap().version_arn,
            arn("Temp:2")
        );
        let dbg = format!("{:?}", l.code_for(&arn("Temp:live")).unwrap());
        assert!(
            dbg.contains("zip_bytes") && !dbg.contains("[80, 75"),
            "{dbg}"
        );

        // What the core is told when there is nothing to run.
        let msg = |a: &str| l.code_for(a).unwrap_err().to_string();
        assert_eq!(
            msg(&arn("Nope:1")),
            "function Nope does not exist on this control plane"
        );
        assert_eq!(
            msg(&arn("Temp:7")),
            "function Temp has no version or alias 7"
        );
        assert_eq!(
            msg(&arn("Temp:blue")),
            "function Temp has no version or alias blue"
        );
        assert!(msg(&arn("Temp")).contains("Greengrass needs a qualified function ARN"));
        assert!(matches!(
            l.code_for("arn:aws:lambda:us-east-1:999999999999:function:Temp:1"),
            Err(FunctionCodeError::NotAFunction { .. })
        ));
    }

    #[test]
    fn create_with_publish_and_get_by_every_qualifier() {
        let (l, _) = lambda();
        let c = create(&l, "Pub", &code("a"), true);
        assert_eq!(
            (c["Version"].as_str(), c["FunctionArn"].as_str()),
            (Some("1"), Some(arn("Pub:1").as_str()))
        );
        l.create_alias(
            "Pub",
            &body(json!({"Name": "prod", "FunctionVersion": "1"})),
        )
        .unwrap();
        let get =
            |name: &str, q: Option<&str>| value(l.get_function(name, q, "http://h:1").unwrap());
        let g = get("Pub", None);
        assert_eq!(g["Configuration"]["FunctionArn"], arn("Pub"));
        assert_eq!(g["Configuration"]["Version"], "$LATEST");
        assert_eq!(g["Code"]["RepositoryType"], "S3");
        assert_eq!(
            g["Code"]["Location"],
            "http://h:1/2015-03-31/functions/Pub/versions/%24LATEST/code-zip"
        );
        let g = get("Pub", Some("prod"));
        assert_eq!(g["Configuration"]["FunctionArn"], arn("Pub:prod"));
        assert_eq!(g["Configuration"]["Version"], "1");
        assert!(
            g["Code"]["Location"]
                .as_str()
                .unwrap()
                .ends_with("/versions/1/code-zip")
        );
        assert_eq!(get(&arn("Pub:1"), None)["Configuration"]["Version"], "1");
        assert_eq!(
            get(&format!("{ACCOUNT}:function:Pub"), Some("1"))["Configuration"]["Version"],
            "1"
        );
        assert!(matches!(
            l.get_function(&arn("Pub:1"), Some("prod"), ""),
            Err(LambdaError::InvalidParameterValue(m)) if m.contains("derived qualifier")
        ));
        assert!(matches!(
            l.get_function("Pub", Some("9"), ""),
            Err(LambdaError::ResourceNotFound(m)) if m == format!("Function not found: {}", arn("Pub:9"))
        ));
        assert!(matches!(
            l.get_function_configuration("Other", None),
            Err(LambdaError::ResourceNotFound(m)) if m == format!("Function not found: {}", arn("Other"))
        ));
        match l.code_zip("Pub", "prod").unwrap() {
            Answer::Zip(z) => assert_eq!(z, code("a")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deleting_versions_and_functions_removes_their_records_and_code() {
        let (l, store) = lambda();
        create(&l, "Del", &code("1"), true);
        update(&l, "Del", &code("2"), true);
        update(&l, "Del", &code("3"), false);
        l.create_alias(
            "Del",
            &body(json!({"Name": "live", "FunctionVersion": "1"})),
        )
        .unwrap();
        let zips = || {
            store
                .list(&code_collection("Del"), None, 100)
                .unwrap()
                .len()
        };
        assert_eq!(zips(), 3);
        assert!(matches!(
            l.delete_function("Del", Some("1")),
            Err(LambdaError::ResourceConflict(m)) if m.contains("[live]")
        ));
        assert!(matches!(
            l.delete_function("Del", Some("$LATEST")),
            Err(LambdaError::InvalidParameterValue(_))
        ));
        assert!(matches!(
            l.delete_function("Del", Some("5")),
            Err(LambdaError::ResourceNotFound(_))
        ));
        assert!(matches!(
            l.delete_alias("Del", "live").unwrap(),
            Answer::NoContent
        ));
        l.delete_alias("Del", "live").unwrap();
        l.delete_function("Del", Some("1")).unwrap();
        assert_eq!(zips(), 2, "version 1's zip had no other user");
        // Version 2's code is $LATEST's no more, so deleting it drops the zip; publishing
        // again numbers on from the highest number handed out.
        l.delete_function(&arn("Del:2"), None).unwrap();
        assert_eq!(zips(), 1);
        let v = value(l.publish_version("Del", b"").unwrap());
        assert_eq!(v["Version"], "3");
        assert_eq!(zips(), 1, "version 3 shares $LATEST's zip");

        l.delete_function("Del", None).unwrap();
        for c in [
            FUNCTIONS.to_owned(),
            versions_collection("Del"),
            aliases_collection("Del"),
            code_collection("Del"),
        ] {
            assert!(store.list(&c, None, 10).unwrap().is_empty(), "{c} left");
        }
        assert!(matches!(
            l.delete_function("Del", None),
            Err(LambdaError::ResourceNotFound(_))
        ));
        // A new function of the same name starts from version 1.
        assert_eq!(create(&l, "Del", &code("x"), true)["Version"], "1");
    }

    #[test]
    fn updating_code_replaces_the_zip_and_checks_the_revision() {
        let (l, store) = lambda();
        let c = create(&l, "Up", &code("1"), false);
        let stale = c["RevisionId"].as_str().unwrap().to_owned();
        update(&l, "Up", &code("2"), false);
        assert_eq!(
            store.list(&code_collection("Up"), None, 10).unwrap().len(),
            1
        );
        assert!(matches!(
            l.update_function_code(
                "Up",
                &body(json!({"ZipFile": BASE64.encode(code("3")), "RevisionId": stale}))
            ),
            Err(LambdaError::PreconditionFailed(_))
        ));
        let dry = value(
            l.update_function_code(
                "Up",
                &body(json!({"ZipFile": BASE64.encode(code("4")), "DryRun": true})),
            )
            .unwrap(),
        );
        assert_eq!(dry["CodeSha256"], code_sha256(&code("4")));
        assert_eq!(
            l.code_for(&arn("Up:$LATEST")).unwrap().zip,
            code("2"),
            "a dry run stores nothing"
        );
        assert!(matches!(
            l.publish_version("Up", &body(json!({"CodeSha256": "AAAA"}))),
            Err(LambdaError::InvalidParameterValue(m)) if m.starts_with("CodeSHA256 (AAAA) is different")
        ));
        assert!(matches!(
            l.update_function_code("Nope", &body(json!({"ZipFile": BASE64.encode(code("1"))}))),
            Err(LambdaError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn lists_page_with_markers() {
        let (l, _) = lambda();
        for i in 0..5 {
            create(&l, &format!("f{i}"), &code(&i.to_string()), i % 2 == 0);
        }
        update(&l, "f0", &code("again"), true);
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let walk = |all: bool, size: &str| {
            let mut seen = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let mut pairs = vec![("MaxItems", size)];
                if all {
                    pairs.push(("FunctionVersion", "ALL"));
                }
                if let Some(m) = &marker {
                    pairs.push(("Marker", m));
                }
                let page = value(l.list_functions(&q(&pairs)).unwrap());
                let items = page["Functions"].as_array().unwrap();
                assert!(items.len() <= size.parse().unwrap());
                for f in items {
                    seen.push(format!(
                        "{}:{}",
                        f["FunctionName"].as_str().unwrap(),
                        f["Version"].as_str().unwrap()
                    ));
                }
                match page["NextMarker"].as_str() {
                    Some(m) => marker = Some(m.to_owned()),
                    None => return seen,
                }
            }
        };
        let latest: Vec<String> = (0..5).map(|i| format!("f{i}:$LATEST")).collect();
        assert_eq!(walk(false, "2"), latest);
        assert_eq!(walk(false, "50"), latest);
        let every = [
            "f0:$LATEST",
            "f0:1",
            "f0:2",
            "f1:$LATEST",
            "f2:$LATEST",
            "f2:1",
            "f3:$LATEST",
            "f4:$LATEST",
            "f4:1",
        ];
        for size in ["1", "2", "3", "4", "100"] {
            assert_eq!(walk(true, size), every, "MaxItems {size}");
        }
        let v = value(
            l.list_versions_by_function("f0", &q(&[("MaxItems", "2")]))
                .unwrap(),
        );
        assert_eq!(v["Versions"][0]["FunctionArn"], arn("f0:$LATEST"));
        assert_eq!(v["Versions"][1]["Version"], "1");
        let marker = v["NextMarker"].as_str().unwrap();
        let rest = value(
            l.list_versions_by_function("f0", &q(&[("Marker", marker)]))
                .unwrap(),
        );
        assert_eq!(rest["Versions"].as_array().unwrap().len(), 1);
        assert!(rest.get("NextMarker").is_none());
        for bad in [
            ("MaxItems", "0"),
            ("MaxItems", "x"),
            ("MaxItems", "10001"),
            ("Marker", "zz"),
            ("FunctionVersion", "SOME"),
        ] {
            assert!(
                matches!(
                    l.list_functions(&q(&[bad])),
                    Err(LambdaError::InvalidParameterValue(_))
                ),
                "{bad:?}"
            );
        }

        for a in ["a", "b", "c"] {
            l.create_alias(
                "f0",
                &body(json!({"Name": a, "FunctionVersion": if a == "b" { "2" } else { "1" }})),
            )
            .unwrap();
        }
        let page = value(l.list_aliases("f0", &q(&[("MaxItems", "2")])).unwrap());
        assert_eq!(page["Aliases"].as_array().unwrap().len(), 2);
        let m = page["NextMarker"].as_str().unwrap();
        let page = value(l.list_aliases("f0", &q(&[("Marker", m)])).unwrap());
        assert_eq!(page["Aliases"][0]["Name"], "c");
        let only = value(
            l.list_aliases("f0", &q(&[("FunctionVersion", "2")]))
                .unwrap(),
        );
        assert_eq!(only["Aliases"].as_array().unwrap().len(), 1);
        assert_eq!(only["Aliases"][0]["AliasArn"], arn("f0:b"));
    }

    #[test]
    fn bad_requests_name_the_member() {
        let (l, _) = lambda();
        let zip = BASE64.encode(code("x"));
        let base = json!({"FunctionName": "F", "Runtime": "python3.12", "Role": ROLE,
                          "Handler": "app.handler", "Code": {"ZipFile": zip}});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            l.create_function(&body(b))
        };
        let invalid_with = |k: &str, v: Value, needle: &str| match with(k, v.clone()) {
            Err(LambdaError::InvalidParameterValue(m)) => {
                assert!(m.contains(needle), "{k}={v}: {m}")
            }
            other => panic!("{k}={v}: {other:?}"),
        };
        invalid_with("FunctionName", json!("bad name"), "FunctionName");
        invalid_with("FunctionName", json!("x".repeat(65)), "FunctionName");
        invalid_with("FunctionName", json!("F:1"), "FunctionName");
        invalid_with("Role", json!("admin"), "Role");
        invalid_with("Runtime", json!("cobol"), "Runtime");
        invalid_with("Runtime", Value::Null, "Runtime and Handler are mandatory");
        invalid_with("Handler", json!("a b"), "Handler");
        invalid_with("Timeout", json!(0), "Timeout");
        invalid_with("Timeout", json!(901), "Timeout");
        invalid_with("MemorySize", json!(64), "MemorySize");
        invalid_with("Description", json!("d".repeat(257)), "Description");
        invalid_with(
            "Environment",
            json!({"Variables": {"1X": "v"}}),
            "Environment.Variables",
        );
        invalid_with(
            "Environment",
            json!({"Variables": {"BIG": "v".repeat(4096)}}),
            "4KB",
        );
        invalid_with("Architectures", json!(["mips"]), "Architectures");
        invalid_with("PackageType", json!("Image"), "PackageType");
        invalid_with(
            "VpcConfig",
            json!({"SubnetIds": ["s"]}),
            "VpcConfig is not supported",
        );
        invalid_with(
            "Code",
            json!({"S3Bucket": "b", "S3Key": "k"}),
            "only as ZipFile",
        );
        invalid_with("Code", json!({}), "Code.ZipFile is required");
        invalid_with(
            "Code",
            json!({"ZipFile": BASE64.encode(b"PK not really")}),
            "Could not unzip",
        );
        with(
            "VpcConfig",
            json!({"SubnetIds": [], "SecurityGroupIds": []}),
        )
        .unwrap();
        l.delete_function("F", None).unwrap();

        let content = |b: &[u8], needle: &str| match l.create_function(b) {
            Err(LambdaError::InvalidRequestContent(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(b)),
        };
        content(b"{not json", "Could not parse request body into json");
        content(b"[1]", "JSON object");
        content(br#"{"FunctionName": 5}"#, "FunctionName");
        content(br#"{"Bogus": 1}"#, "unknown field `Bogus`");
        assert!(matches!(
            with("Code", json!({"ZipFile": "!!"})),
            Err(LambdaError::InvalidRequestContent(m)) if m.contains("Code.ZipFile is not valid base64")
        ));
        content(
            br#"{"Environment": {"Variables": {"K": 12345}}}"#,
            "Environment",
        );
        match l.create_function(br#"{"Environment": {"Variables": {"K": 12345}}}"#) {
            Err(e) => assert!(!e.to_string().contains("12345"), "{e}"),
            Ok(_) => panic!(),
        }

        create(&l, "F", &code("x"), false);
        assert!(matches!(
            with("Timeout", json!(10)),
            Err(LambdaError::ResourceConflict(m)) if m == "Function already exist: F"
        ));
        assert!(matches!(
            l.create_alias("F", &body(json!({"Name": "123", "FunctionVersion": "$LATEST"}))),
            Err(LambdaError::InvalidParameterValue(m)) if m.starts_with("Name:")
        ));
        assert!(matches!(
            l.create_alias("F", &body(json!({"Name": "a", "FunctionVersion": "4"}))),
            Err(LambdaError::ResourceNotFound(m)) if m == format!("Function not found: {}", arn("F:4"))
        ));
        l.create_alias(
            "F",
            &body(json!({"Name": "a", "FunctionVersion": "$LATEST"})),
        )
        .unwrap();
        assert!(matches!(
            l.create_alias("F", &body(json!({"Name": "a", "FunctionVersion": "$LATEST"}))),
            Err(LambdaError::ResourceConflict(m)) if m == format!("Alias already exists: {}", arn("F:a"))
        ));
        assert!(matches!(
            l.get_alias("F", "zzz"),
            Err(LambdaError::ResourceNotFound(m)) if m == format!("Alias not found: {}", arn("F:zzz"))
        ));
        assert!(matches!(
            l.create_alias("F", &body(json!({"Name": "w", "FunctionVersion": "$LATEST",
                "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}))),
            Err(LambdaError::InvalidParameterValue(m)) if m.starts_with("RoutingConfig")
        ));
    }
}
