//! The Greengrass operations, as plain synchronous functions over the store.
//!
//! The HTTP layer decodes a request, runs one of these on a blocking thread, and encodes the
//! answer. Every mutation runs under one write lock, so read-modify-write sequences (a new
//! version and its definition's LatestVersion pointer) are consistent, and each is committed
//! as one atomic batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use coupler_model::api::GroupVersion;
use coupler_model::arn::{DefinitionKind, DefinitionVersionArn};
use coupler_model::bundle::{GroupBundle, ParseError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Digest;

use crate::ca;
use crate::error::{ApiError, ApiResult, ErrorDetail, SecretsError};
use crate::lambda::{FunctionCode, FunctionCodeError, Lambda};
use crate::secrets::{SecretVersion, Secrets, SecretsKey};
use crate::store::{Op, Store};
use crate::versions::{Epoch, ParsedVersions};
use crate::wire::{
    Identity, Page, Taggable, Tags, check_name, check_tags, from_json, new_id, now, to_json,
};

/// The control plane: the store, who it is, and the write lock.
pub struct Service {
    store: Arc<dyn Store>,
    identity: Identity,
    write: Mutex<()>,
    /// Notified whenever a deployment is created, so an attached core acts at once.
    deployments: Arc<tokio::sync::Notify>,
    /// The Secrets Manager operations; absent until a key is given ([`Service::with_secrets`]).
    secrets: Option<Secrets>,
    /// The Lambda operations: functions, versions, aliases and their code.
    lambda: Lambda,
    /// Recent definition versions, parsed: what `CreateGroupVersion` reads most.
    parsed: ParsedVersions,
}

/// A deployment waiting for the core, with its group resolved.
#[derive(Debug, Clone)]
pub struct PendingDeployment {
    pub group_id: String,
    pub record: DeploymentRecord,
    /// The group version's definitions; `None` for a reset.
    pub group: Option<GroupBundle>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A stored definition: `DefinitionInformation` plus its tags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DefinitionRecord {
    arn: String,
    creation_timestamp: String,
    id: String,
    last_updated_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_version_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "tags", default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: Tags,
}

/// A stored version of a definition or a group: `VersionInformation` plus its definition.
/// A stored version of a definition or a group: `VersionInformation` plus its definition,
/// kept as the JSON text it was validated as (it is the `Get…Version` answer as stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionRecord {
    arn: String,
    creation_timestamp: String,
    id: String,
    version: String,
    definition: Box<RawValue>,
}

/// A stored record sent back as it is.
#[derive(Debug)]
pub struct Raw(pub Vec<u8>);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionInformation<'a> {
    arn: &'a str,
    creation_timestamp: &'a str,
    id: &'a str,
    version: &'a str,
}

impl VersionRecord {
    fn info(&self) -> VersionInformation<'_> {
        VersionInformation {
            arn: &self.arn,
            creation_timestamp: &self.creation_timestamp,
            id: &self.id,
            version: &self.version,
        }
    }
}

/// A stored group: `GroupInformation`, tags, role and certificate settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GroupRecord {
    #[serde(flatten)]
    info: DefinitionRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<RoleRecord>,
    #[serde(default = "ca::default_certificate_expiry_ms")]
    certificate_expiry_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleRecord {
    role_arn: String,
    associated_at: String,
}

/// A server certificate and key from a group CA, with the CA that devices trust.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerCertificate {
    pub ca_pem: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub expiry_ms: u64,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("expiry_ms", &self.expiry_ms)
            .finish_non_exhaustive()
    }
}

/// The thing name of a group's core, if its core definition names one.
fn core_thing(bundle: &GroupBundle) -> Option<String> {
    let core = bundle
        .core_definition_version
        .as_ref()?
        .cores
        .as_ref()?
        .first()?;
    coupler_model::arn::ThingArn::parse(&core.thing_arn)
        .ok()
        .map(|t| t.thing_name().to_owned())
}

/// A stored deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentRecord {
    pub created_at: String,
    pub deployment_arn: String,
    pub deployment_id: String,
    pub deployment_type: String,
    pub group_arn: String,
    /// The group version deployed; absent for resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_version_id: Option<String>,
    pub status: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_details: Vec<StoredErrorDetail>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredErrorDetail {
    pub detailed_error_code: String,
    pub detailed_error_message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyRecord {
    fingerprint: String,
    response: Value,
}

/// What `Create{K}Definition` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDefinitionRequest {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "InitialVersion")]
    initial_version: Option<Box<RawValue>>,
    #[serde(rename = "tags", default)]
    tags: Tags,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateNameRequest {
    #[serde(rename = "Name")]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "InitialVersion")]
    initial_version: Option<GroupVersion>,
    #[serde(rename = "tags", default)]
    tags: Tags,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentRequest {
    #[serde(rename = "DeploymentId")]
    deployment_id: Option<String>,
    #[serde(rename = "DeploymentType")]
    deployment_type: String,
    #[serde(rename = "GroupVersionId")]
    group_version_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[serde(rename = "Force", default)]
    force: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    #[serde(rename = "RoleArn")]
    role_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfigurationRequest {
    #[serde(rename = "CertificateExpiryInMilliseconds")]
    certificate_expiry_ms: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectivityInfo {
    #[serde(rename = "HostAddress")]
    host_address: Option<String>,
    #[serde(rename = "Id")]
    id: Option<String>,
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    #[serde(rename = "PortNumber")]
    port_number: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCertificateRequest {
    #[serde(rename = "ThingName")]
    pub thing_name: String,
    #[serde(rename = "GroupId")]
    pub group_id: Option<String>,
    #[serde(rename = "ValidityDays")]
    pub validity_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectivityRequest {
    #[serde(rename = "ConnectivityInfo", default)]
    connectivity_info: Vec<ConnectivityInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfigurationRequest {
    #[serde(rename = "TelemetryConfiguration")]
    telemetry_configuration: Option<TelemetryUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryUpdate {
    #[serde(rename = "Telemetry")]
    telemetry: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    #[serde(rename = "tags", default)]
    tags: Tags,
}

/// How the 404s name each kind, in the service's words.
fn kind_title(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Connectors => "Connector Definition",
        DefinitionKind::Cores => "Core Definition",
        DefinitionKind::Devices => "Device Definition",
        DefinitionKind::Functions => "Lambda Definition",
        DefinitionKind::Loggers => "Logger Definition",
        DefinitionKind::Resources => "Resource Definition",
        DefinitionKind::Subscriptions => "Subscription List Definition",
    }
}

/// A definition version's payload, checked: as it is to be stored, and parsed.
struct Payload {
    json: Box<RawValue>,
    /// A bundle holding only this payload.
    parsed: GroupBundle,
}

/// Read a definition-version payload: its shape (a problem names its field), then every
/// rule that needs no other definition (ids, ARN formats, paths, parameters, topics). Gives
/// back the JSON that is stored and returned, and its parsed form.
fn parse_definition(kind: DefinitionKind, body: &[u8], field: &str) -> ApiResult<Payload> {
    let bundle = GroupBundle::with_definition(kind, body).map_err(|e| match e {
        ParseError::Invalid { path, message } if path == "(document)" => {
            ApiError::bad_request(format!("{field}: {message}"))
        }
        ParseError::Invalid { path, message } => {
            let path = if field.is_empty() {
                path
            } else {
                format!("{field}.{path}")
            };
            ApiError::bad_request(format!("{path}: {message}"))
        }
        other => ApiError::bad_request(other.to_string()),
    })?;
    let problems = coupler_model::validate::validate_definition_in(kind, &bundle);
    if !problems.is_empty() {
        return Err(invalid(
            "InvalidDefinitionVersion",
            &format!("The {} is invalid.", kind_title(kind).to_lowercase()),
            problems,
        ));
    }
    // Stored as sent: it has just parsed strictly (no unknown or duplicate fields), and
    // checking JSON costs less than writing the parsed definition out again.
    let json = std::str::from_utf8(body)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
        .ok_or_else(|| ApiError::Internal("a parsed definition is not JSON text".into()))?;
    Ok(Payload {
        json,
        parsed: bundle,
    })
}

fn invalid(code: &str, message: &str, problems: Vec<coupler_model::Problem>) -> ApiError {
    ApiError::with_details(
        format!(
            "{message} (ErrorDetails: [{}])",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        problems
            .into_iter()
            .map(|p| ErrorDetail::new(code, p.to_string()))
            .collect(),
    )
}

/// The new name of an `Update…` request: the only attribute that can change.
fn new_name(body: &[u8]) -> ApiResult<String> {
    let req: UpdateNameRequest = crate::wire::parse_body(body)?;
    let Some(name) = req.name.filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest {
            code: "InvalidContainerDefinitionException",
            message: "Input does not contain any attributes to be updated".into(),
            details: Vec::new(),
        });
    };
    check_name(&name)?;
    Ok(name)
}

fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn put<T: Serialize>(
    collection: impl Into<String>,
    key: impl Into<String>,
    v: &T,
) -> ApiResult<Op> {
    Ok(Op::Put {
        collection: collection.into(),
        key: key.into(),
        value: to_json(v)?,
    })
}

fn insert<T: Serialize>(
    collection: impl Into<String>,
    key: impl Into<String>,
    v: &T,
) -> ApiResult<Op> {
    Ok(Op::Insert {
        collection: collection.into(),
        key: key.into(),
        value: to_json(v)?,
    })
}

fn definitions_collection(kind: DefinitionKind) -> String {
    format!("definitions/{}", kind.as_str())
}

fn versions_collection(kind: DefinitionKind, id: &str) -> String {
    format!("versions/{}/{id}", kind.as_str())
}

fn group_versions_collection(group: &str) -> String {
    format!("group-versions/{group}")
}

fn deployments_collection(group: &str) -> String {
    format!("deployments/{group}")
}

fn cas_collection(group: &str) -> String {
    format!("cas/{group}")
}

const GROUPS: &str = "groups";

/// A page of records: the JSON list and the token for the next page.
fn page_json<T: for<'de> Deserialize<'de>, F: Fn(&T) -> Value>(
    store: &dyn Store,
    collection: &str,
    page: Page,
    list_key: &str,
    f: F,
) -> ApiResult<Value> {
    // One more than asked tells whether there is a next page.
    let items = store.list(collection, page.after, page.limit + 1)?;
    let more = items.len() > page.limit;
    let mut out = Vec::with_capacity(items.len().min(page.limit));
    let mut last = None;
    for item in items.into_iter().take(page.limit) {
        out.push(f(&from_json::<T>(&item.value)?));
        last = Some(item.seq);
    }
    let mut body = serde_json::Map::new();
    body.insert(list_key.to_owned(), Value::Array(out));
    if more && let Some(seq) = last {
        body.insert("NextToken".into(), Value::String(seq.to_string()));
    }
    Ok(Value::Object(body))
}

fn json<T: Serialize>(v: &T) -> ApiResult<Value> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.to_string()))
}

impl Service {
    pub fn new(store: Arc<dyn Store>, identity: Identity) -> Self {
        Self {
            lambda: Lambda::new(store.clone(), identity.clone()),
            store,
            identity,
            write: Mutex::new(()),
            deployments: Arc::new(tokio::sync::Notify::new()),
            secrets: None,
            parsed: ParsedVersions::default(),
        }
    }

    /// Serve the Secrets Manager operations too, sealing values with `key`.
    pub fn with_secrets(mut self, key: SecretsKey) -> Self {
        self.secrets = Some(Secrets::new(self.store.clone(), self.identity.clone(), key));
        self
    }

    /// The Secrets Manager operations, if this service has a secrets key.
    pub fn secrets(&self) -> Result<&Secrets, SecretsError> {
        self.secrets.as_ref().ok_or_else(|| {
            SecretsError::InvalidRequest(
                "Secrets Manager is not enabled on this control plane (no secrets key).".into(),
            )
        })
    }

    /// A secret's value at `stage` (AWSCURRENT if `None`), by name, ARN or partial ARN, for
    /// the core's deployment agent; `None` if the secret or the stage does not exist.
    pub fn secret_value(
        &self,
        secret_id: &str,
        stage: Option<&str>,
    ) -> Result<Option<SecretVersion>, SecretsError> {
        self.secrets()?.secret_value(secret_id, stage)
    }

    /// The Lambda operations.
    pub fn lambda(&self) -> &Lambda {
        &self.lambda
    }

    /// The code of the function version or alias a qualified Lambda ARN names, for the
    /// core's function host at deployment (see [`Lambda::code_for`]).
    pub fn function_code(&self, arn: &str) -> Result<FunctionCode, FunctionCodeError> {
        self.lambda.code_for(arn)
    }

    /// Notified when a deployment is created.
    pub fn deployment_notifier(&self) -> Arc<tokio::sync::Notify> {
        self.deployments.clone()
    }

    /// The newest deployment of all groups, if it still waits for the core: a core belongs to
    /// one group, so a newer deployment (of any group) supersedes older ones.
    pub fn pending_deployment(&self) -> ApiResult<Option<PendingDeployment>> {
        let Some((group_id, record)) = self.newest_deployment()? else {
            return Ok(None);
        };
        if record.status != "InProgress" {
            return Ok(None);
        }
        let group = match &record.group_version_id {
            Some(vid) => Some(self.group_bundle(&group_id, vid)?),
            None => None,
        };
        Ok(Some(PendingDeployment {
            group_id,
            record,
            group,
        }))
    }

    /// The deployment waiting for the core of `thing` (a core attached with `coupler core`):
    /// the newest `InProgress` deployment of a group whose version names `thing` as its core.
    /// A reset names no version: it goes to the core of the group's latest version.
    pub fn pending_deployment_for(&self, thing: &str) -> ApiResult<Option<PendingDeployment>> {
        let mut newest: Option<PendingDeployment> = None;
        let mut after = None;
        loop {
            let groups = self.store.list(GROUPS, after, 1000)?;
            for g in &groups {
                let Some(d) = self.latest_deployment(&g.key)? else {
                    continue;
                };
                if d.status != "InProgress"
                    || newest
                        .as_ref()
                        .is_some_and(|n| n.record.created_at >= d.created_at)
                {
                    continue;
                }
                let version = match &d.group_version_id {
                    Some(v) => v.clone(),
                    None => match self.group(&g.key)?.info.latest_version {
                        Some(v) => v,
                        None => continue,
                    },
                };
                let bundle = self.group_bundle(&g.key, &version)?;
                if core_thing(&bundle).as_deref() != Some(thing) {
                    continue;
                }
                let group = d.group_version_id.is_some().then_some(bundle);
                newest = Some(PendingDeployment {
                    group_id: g.key.clone(),
                    record: d,
                    group,
                });
            }
            match groups.last() {
                Some(last) if groups.len() == 1000 => after = Some(last.seq),
                _ => break,
            }
        }
        Ok(newest)
    }

    /// A server certificate for the MQTT server of `group_id`'s core, issued by the group CA
    /// (made now if the group has none) for `names`, with the group's certificate expiry.
    pub fn issue_server_certificate(
        &self,
        group_id: &str,
        names: Vec<String>,
    ) -> ApiResult<ServerCertificate> {
        let ca = self.group_ca_or_create(group_id)?;
        let expiry_ms = self.certificate_expiry_ms(group_id)?;
        let issued = ca
            .issue(
                &ca::Usage::Server { names },
                time::Duration::milliseconds(i64::try_from(expiry_ms).unwrap_or(i64::MAX)),
            )
            .map_err(|e| ApiError::Internal(format!("issuing a server certificate: {e}")))?;
        Ok(ServerCertificate {
            ca_pem: ca.certificate_pem,
            certificate_pem: issued.certificate_pem,
            private_key_pem: issued.private_key_pem,
            expiry_ms,
        })
    }

    /// The most recent deployment of any group.
    pub fn newest_deployment(&self) -> ApiResult<Option<(String, DeploymentRecord)>> {
        let mut newest: Option<(String, DeploymentRecord)> = None;
        let mut after = None;
        loop {
            let groups = self.store.list(GROUPS, after, 1000)?;
            for g in &groups {
                if let Some(d) = self.latest_deployment(&g.key)?
                    && newest
                        .as_ref()
                        .is_none_or(|(_, n)| d.created_at > n.created_at)
                {
                    newest = Some((g.key.clone(), d));
                }
            }
            match groups.last() {
                Some(last) if groups.len() == 1000 => after = Some(last.seq),
                _ => break,
            }
        }
        Ok(newest)
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        collection: &str,
        key: &str,
    ) -> ApiResult<Option<T>> {
        self.store
            .get(collection, key)?
            .map(|v| from_json(&v))
            .transpose()
    }

    /// Run a creating operation once per client token: a retry with the same token and the
    /// same request gets the first answer, with another request a 400.
    fn idempotent(
        &self,
        op: &str,
        token: Option<&str>,
        request: &[&[u8]],
        create: impl FnOnce() -> ApiResult<(Value, Vec<Op>)>,
    ) -> ApiResult<Value> {
        let _guard = self.write.lock();
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            let (response, ops) = create()?;
            self.store.write(&ops)?;
            return Ok(response);
        };
        let key = format!("{op}:{token}");
        let fp = fingerprint(request);
        if let Some(prev) = self.get::<IdempotencyRecord>("idempotency", &key)? {
            if prev.fingerprint == fp {
                return Ok(prev.response);
            }
            return Err(ApiError::bad_request(format!(
                "The client token {token:?} was already used with different parameters."
            )));
        }
        let (response, mut ops) = create()?;
        ops.push(insert(
            "idempotency",
            key,
            &IdempotencyRecord {
                fingerprint: fp,
                response: response.clone(),
            },
        )?);
        self.store.write(&ops)?;
        Ok(response)
    }

    // ---- definitions ------------------------------------------------------------------

    fn definition(
        &self,
        kind: DefinitionKind,
        id: &str,
        lower: bool,
    ) -> ApiResult<DefinitionRecord> {
        self.get(&definitions_collection(kind), id)?.ok_or_else(|| {
            let msg = if lower {
                format!("That {} definition does not exist.", kind.as_str())
            } else {
                format!("That {} does not exist.", kind_title(kind))
            };
            ApiError::not_found("IdNotFoundException", msg)
        })
    }

    /// The ops and record of a new version of an existing definition.
    fn version_ops(
        &self,
        kind: DefinitionKind,
        def: &mut DefinitionRecord,
        payload: Box<RawValue>,
    ) -> ApiResult<(VersionRecord, Vec<Op>)> {
        let vid = new_id();
        let now = now();
        let version = VersionRecord {
            arn: self.identity.definition_version_arn(kind, &def.id, &vid),
            creation_timestamp: now.clone(),
            id: def.id.clone(),
            version: vid.clone(),
            definition: payload,
        };
        def.latest_version = Some(vid.clone());
        def.latest_version_arn = Some(version.arn.clone());
        def.last_updated_timestamp = now;
        let ops = vec![
            insert(versions_collection(kind, &def.id), &vid, &version)?,
            put(definitions_collection(kind), &def.id, &*def)?,
        ];
        Ok((version, ops))
    }

    pub fn create_definition(
        &self,
        kind: DefinitionKind,
        token: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let req: CreateDefinitionRequest = crate::wire::parse_body(body)?;
        if let Some(n) = &req.name {
            check_name(n)?;
        }
        check_tags(&req.tags)?;
        let initial = req
            .initial_version
            .as_ref()
            .map(|raw| parse_definition(kind, raw.get().as_bytes(), "InitialVersion"))
            .transpose()?;
        let (initial, parsed) = initial
            .map(|p| {
                let bytes = p.json.get().len();
                (p.json, (bytes, p.parsed))
            })
            .unzip();
        let epoch = self.parsed.epoch();
        let response = self.idempotent(
            &format!("CreateDefinition/{}", kind.as_str()),
            token,
            &[body],
            || {
                let id = new_id();
                let now = now();
                let mut def = DefinitionRecord {
                    arn: self.identity.definition_arn(kind, &id),
                    creation_timestamp: now.clone(),
                    id: id.clone(),
                    last_updated_timestamp: now,
                    latest_version: None,
                    latest_version_arn: None,
                    name: req.name,
                    tags: req.tags,
                };
                let mut ops = Vec::new();
                if let Some(initial) = initial {
                    let (_, v_ops) = self.version_ops(kind, &mut def, initial)?;
                    ops.extend(v_ops);
                } else {
                    ops.push(put(definitions_collection(kind), &id, &def)?);
                }
                let mut response = json(&def)?;
                // The create response carries no tags.
                if let Value::Object(m) = &mut response {
                    m.remove("tags");
                }
                Ok((response, ops))
            },
        )?;
        if let Some((bytes, parsed)) = parsed {
            self.keep_parsed(epoch, kind, &response, "LatestVersion", bytes, parsed);
        }
        Ok(response)
    }

    /// Keep the parsed payload of a version just written (`response` names it by `Id` and
    /// the field `version`), for the group versions that will use it.
    fn keep_parsed(
        &self,
        epoch: Epoch,
        kind: DefinitionKind,
        response: &Value,
        version: &str,
        bytes: usize,
        parsed: GroupBundle,
    ) {
        if let (Some(id), Some(vid)) = (response["Id"].as_str(), response[version].as_str()) {
            self.parsed.put(epoch, kind, id, vid, bytes, parsed);
        }
    }

    pub fn get_definition(&self, kind: DefinitionKind, id: &str) -> ApiResult<Raw> {
        // The stored record is the answer: DefinitionInformation with its tags.
        self.store
            .get(&definitions_collection(kind), id)?
            .map(Raw)
            .ok_or_else(|| {
                ApiError::not_found(
                    "IdNotFoundException",
                    format!("That {} does not exist.", kind_title(kind)),
                )
            })
    }

    pub fn list_definitions(&self, kind: DefinitionKind, page: Page) -> ApiResult<Value> {
        page_json::<DefinitionRecord, _>(
            &*self.store,
            &definitions_collection(kind),
            page,
            "Definitions",
            |d| json(d).unwrap_or(Value::Null),
        )
    }

    pub fn update_definition(
        &self,
        kind: DefinitionKind,
        id: &str,
        body: &[u8],
    ) -> ApiResult<Value> {
        let name = new_name(body)?;
        let _guard = self.write.lock();
        let mut def = self.definition(kind, id, true)?;
        def.name = Some(name);
        def.last_updated_timestamp = now();
        self.store
            .write(&[put(definitions_collection(kind), id, &def)?])?;
        Ok(Value::Object(Default::default()))
    }

    pub fn delete_definition(&self, kind: DefinitionKind, id: &str) -> ApiResult<Value> {
        let _guard = self.write.lock();
        self.definition(kind, id, true)?;
        self.store.write(&[
            Op::Delete {
                collection: definitions_collection(kind),
                key: id.to_owned(),
            },
            Op::DeleteCollection {
                collection: versions_collection(kind, id),
            },
        ])?;
        self.parsed.forget(kind, id);
        Ok(Value::Object(Default::default()))
    }

    pub fn create_definition_version(
        &self,
        kind: DefinitionKind,
        id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let Payload {
            json: payload,
            parsed,
        } = parse_definition(kind, body, "")?;
        let bytes = payload.get().len();
        let epoch = self.parsed.epoch();
        let op = format!("CreateDefinitionVersion/{}/{id}", kind.as_str());
        let response = self.idempotent(&op, token, &[body], || {
            let mut def = self.definition(kind, id, true)?;
            let (version, ops) = self.version_ops(kind, &mut def, payload)?;
            Ok((json(&version.info())?, ops))
        })?;
        self.keep_parsed(epoch, kind, &response, "Version", bytes, parsed);
        Ok(response)
    }

    fn definition_version(
        &self,
        kind: DefinitionKind,
        id: &str,
        vid: &str,
    ) -> ApiResult<VersionRecord> {
        self.definition(kind, id, false)?;
        self.get(&versions_collection(kind, id), vid)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "VersionNotFoundException",
                    format!("Version {vid} of {} {id} does not exist.", kind_title(kind)),
                )
            })
    }

    pub fn get_definition_version(
        &self,
        kind: DefinitionKind,
        id: &str,
        vid: &str,
    ) -> ApiResult<Raw> {
        self.stored_version(&versions_collection(kind, id), vid, || {
            self.definition_version(kind, id, vid)
        })
    }

    pub fn list_definition_versions(
        &self,
        kind: DefinitionKind,
        id: &str,
        page: Page,
    ) -> ApiResult<Value> {
        self.definition(kind, id, true)?;
        page_json::<VersionRecord, _>(
            &*self.store,
            &versions_collection(kind, id),
            page,
            "Versions",
            |v| json(&v.info()).unwrap_or(Value::Null),
        )
    }

    // ---- groups -----------------------------------------------------------------------

    fn group(&self, id: &str) -> ApiResult<GroupRecord> {
        self.get(GROUPS, id)?.ok_or_else(|| {
            ApiError::not_found(
                "IdNotFoundException",
                "That Group Definition does not exist.",
            )
        })
    }

    /// A definition version, parsed (a bundle holding only its payload), if it exists.
    fn parsed_version(
        &self,
        kind: DefinitionKind,
        id: &str,
        vid: &str,
    ) -> ApiResult<Option<GroupBundle>> {
        if let Some(kept) = self.parsed.get(kind, id, vid) {
            return Ok(Some(kept));
        }
        let epoch = self.parsed.epoch();
        let Some(v) = self.get::<VersionRecord>(&versions_collection(kind, id), vid)? else {
            return Ok(None);
        };
        let json = v.definition.get();
        let parsed = GroupBundle::with_definition(kind, json.as_bytes()).map_err(|e| {
            ApiError::Internal(format!(
                "stored version {vid} of {} {id}: {e}",
                kind.as_str()
            ))
        })?;
        self.parsed
            .put(epoch, kind, id, vid, json.len(), parsed.clone());
        Ok(Some(parsed))
    }

    /// Resolve a group version's definition-version ARNs into a bundle, or say which are
    /// missing, as the service does.
    fn resolve(&self, gv: &GroupVersion) -> ApiResult<GroupBundle> {
        let mut missing = Vec::new();
        let mut bundle = GroupBundle::default();
        let refs: [(&Option<String>, DefinitionKind, &str); 7] = [
            (
                &gv.core_definition_version_arn,
                DefinitionKind::Cores,
                "Cores",
            ),
            (
                &gv.device_definition_version_arn,
                DefinitionKind::Devices,
                "Devices",
            ),
            (
                &gv.function_definition_version_arn,
                DefinitionKind::Functions,
                "Lambda",
            ),
            (
                &gv.subscription_definition_version_arn,
                DefinitionKind::Subscriptions,
                "Subscription",
            ),
            (
                &gv.logger_definition_version_arn,
                DefinitionKind::Loggers,
                "Loggers",
            ),
            (
                &gv.resource_definition_version_arn,
                DefinitionKind::Resources,
                "Resource",
            ),
            (
                &gv.connector_definition_version_arn,
                DefinitionKind::Connectors,
                "Connectors",
            ),
        ];
        for (arn, kind, word) in refs {
            let Some(arn) = arn else { continue };
            let version = DefinitionVersionArn::parse(arn).ok().filter(|a| {
                a.kind() == kind && arn.starts_with(&self.identity.definition_arn(kind, ""))
            });
            let found = match version {
                Some(a) => self.parsed_version(kind, a.definition_id(), a.version_id())?,
                None => None,
            };
            let Some(parsed) = found else {
                missing.push(format!("{word} definition reference does not exist"));
                continue;
            };
            bundle.set_definition_from(kind, &parsed);
        }
        if !missing.is_empty() {
            return Err(ApiError::with_details(
                format!(
                    "The group is invalid or corrupted. (ErrorDetails: [{}])",
                    missing.join(", ")
                ),
                missing
                    .into_iter()
                    .map(|m| ErrorDetail::new("InvalidGroupVersion", m))
                    .collect(),
            ));
        }
        Ok(bundle)
    }

    /// Resolve and validate a group version; a missing core is allowed here (it is refused
    /// at deployment, as Greengrass does).
    fn check_group_version(&self, gv: &GroupVersion) -> ApiResult<()> {
        let bundle = self.resolve(gv)?;
        // Whether functions may run as root is the core's setting, checked when it deploys.
        let options = coupler_model::Options {
            allow_functions_to_run_as_root: true,
        };
        if let Err(problems) = coupler_model::validate(&bundle, &options) {
            let problems: Vec<_> = problems
                .into_iter()
                .filter(|p| p.path != "CoreDefinitionVersion")
                .collect();
            if !problems.is_empty() {
                return Err(invalid(
                    "InvalidGroupVersion",
                    "The group is invalid or corrupted.",
                    problems,
                ));
            }
        }
        Ok(())
    }

    fn group_version_ops(
        &self,
        group: &mut GroupRecord,
        gv: GroupVersion,
    ) -> ApiResult<(VersionRecord, Vec<Op>)> {
        let vid = new_id();
        let now = now();
        let version = VersionRecord {
            arn: self.identity.group_version_arn(&group.info.id, &vid),
            creation_timestamp: now.clone(),
            id: group.info.id.clone(),
            version: vid.clone(),
            definition: RawValue::from_string(
                serde_json::to_string(&gv).map_err(|e| ApiError::Internal(e.to_string()))?,
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        };
        group.info.latest_version = Some(vid.clone());
        group.info.latest_version_arn = Some(version.arn.clone());
        group.info.last_updated_timestamp = now;
        Ok((
            version.clone(),
            vec![
                insert(group_versions_collection(&group.info.id), &vid, &version)?,
                put(GROUPS, &group.info.id, &*group)?,
            ],
        ))
    }

    pub fn create_group(&self, token: Option<&str>, body: &[u8]) -> ApiResult<Value> {
        let req: CreateGroupRequest = crate::wire::parse_body(body)?;
        check_name(&req.name)?;
        check_tags(&req.tags)?;
        if let Some(gv) = &req.initial_version {
            self.check_group_version(gv)?;
        }
        self.idempotent("CreateGroup", token, &[body], || {
            let id = new_id();
            let now = now();
            let mut group = GroupRecord {
                info: DefinitionRecord {
                    arn: self.identity.group_arn(&id),
                    creation_timestamp: now.clone(),
                    id: id.clone(),
                    last_updated_timestamp: now,
                    latest_version: None,
                    latest_version_arn: None,
                    name: Some(req.name),
                    tags: req.tags,
                },
                role: None,
                certificate_expiry_ms: ca::default_certificate_expiry_ms(),
            };
            let mut ops = Vec::new();
            if let Some(gv) = req.initial_version {
                let (_, v_ops) = self.group_version_ops(&mut group, gv)?;
                ops.extend(v_ops);
            } else {
                ops.push(put(GROUPS, &id, &group)?);
            }
            let mut response = json(&group.info)?;
            if let Value::Object(m) = &mut response {
                m.remove("tags");
            }
            Ok((response, ops))
        })
    }

    pub fn get_group(&self, id: &str) -> ApiResult<Value> {
        json(&self.group(id)?.info)
    }

    pub fn list_groups(&self, page: Page) -> ApiResult<Value> {
        page_json::<GroupRecord, _>(&*self.store, GROUPS, page, "Groups", |g| {
            let mut v = json(&g.info).unwrap_or(Value::Null);
            // GroupInformation has no tags.
            if let Value::Object(m) = &mut v {
                m.remove("tags");
            }
            v
        })
    }

    pub fn update_group(&self, id: &str, body: &[u8]) -> ApiResult<Value> {
        let name = new_name(body)?;
        let _guard = self.write.lock();
        let mut group = self.group(id)?;
        group.info.name = Some(name);
        group.info.last_updated_timestamp = now();
        self.store.write(&[put(GROUPS, id, &group)?])?;
        Ok(Value::Object(Default::default()))
    }

    pub fn delete_group(&self, id: &str) -> ApiResult<Value> {
        let _guard = self.write.lock();
        self.group(id)?;
        self.store.write(&[
            Op::Delete {
                collection: GROUPS.into(),
                key: id.to_owned(),
            },
            Op::DeleteCollection {
                collection: group_versions_collection(id),
            },
            Op::DeleteCollection {
                collection: deployments_collection(id),
            },
            Op::DeleteCollection {
                collection: cas_collection(id),
            },
        ])?;
        Ok(Value::Object(Default::default()))
    }

    pub fn create_group_version(
        &self,
        id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let gv: GroupVersion = crate::wire::parse_body(body)?;
        // Referenced versions never change, so the group is judged before taking the write
        // lock: validation of one group version does not hold up other writers.
        self.check_group_version(&gv)?;
        self.idempotent(&format!("CreateGroupVersion/{id}"), token, &[body], || {
            let mut group = self.group(id)?;
            let (version, ops) = self.group_version_ops(&mut group, gv)?;
            Ok((json(&version.info())?, ops))
        })
    }

    fn group_version(&self, id: &str, vid: &str) -> ApiResult<VersionRecord> {
        self.group(id)?;
        self.get(&group_versions_collection(id), vid)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "VersionNotFoundException",
                    format!("Version {vid} of Group Definition {id} does not exist."),
                )
            })
    }

    pub fn get_group_version(&self, id: &str, vid: &str) -> ApiResult<Raw> {
        self.stored_version(&group_versions_collection(id), vid, || {
            self.group_version(id, vid)
        })
    }

    /// A stored version record, which is the `Get…Version` answer as it is (a definition's or
    /// group's versions go with it). When it is missing, `explain` gives the right not-found
    /// error: the definition's or group's, or the version's.
    fn stored_version(
        &self,
        collection: &str,
        vid: &str,
        explain: impl FnOnce() -> ApiResult<VersionRecord>,
    ) -> ApiResult<Raw> {
        if let Some(v) = self.store.get(collection, vid)? {
            return Ok(Raw(v));
        }
        // Found after all (written in between): answer it as stored.
        serde_json::to_vec(&explain()?)
            .map(Raw)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn list_group_versions(&self, id: &str, page: Page) -> ApiResult<Value> {
        self.group(id)?;
        page_json::<VersionRecord, _>(
            &*self.store,
            &group_versions_collection(id),
            page,
            "Versions",
            |v| json(&v.info()).unwrap_or(Value::Null),
        )
    }

    /// The group version of a group, resolved into a bundle (for the core).
    pub fn group_bundle(&self, id: &str, vid: &str) -> ApiResult<GroupBundle> {
        let v = self.group_version(id, vid)?;
        let gv: GroupVersion = serde_json::from_str(v.definition.get())
            .map_err(|e| ApiError::Internal(format!("stored group version: {e}")))?;
        self.resolve(&gv)
    }

    // ---- deployments ------------------------------------------------------------------

    fn deployment(&self, group: &str, id: &str) -> ApiResult<Option<DeploymentRecord>> {
        self.get(&deployments_collection(group), id)
    }

    pub fn create_deployment(
        &self,
        group_id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let answer = self.record_deployment(group_id, token, body)?;
        self.deployments.notify_one();
        Ok(answer)
    }

    fn record_deployment(
        &self,
        group_id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let req: CreateDeploymentRequest = crate::wire::parse_body(body)?;
        const TYPES: [&str; 4] = [
            "NewDeployment",
            "Redeployment",
            "ResetDeployment",
            "ForceResetDeployment",
        ];
        if !TYPES.contains(&req.deployment_type.as_str()) {
            return Err(ApiError::invalid_input(
                "That deployment type is not valid.  Please specify one of the following types: {NewDeployment,Redeployment,ResetDeployment,ForceResetDeployment}.",
            ));
        }
        if req.deployment_type.ends_with("ResetDeployment") {
            return self.reset(
                group_id,
                token,
                body,
                req.deployment_type == "ForceResetDeployment",
            );
        }
        self.idempotent(&format!("CreateDeployment/{group_id}"), token, &[body], || {
            // Only its existence matters here.
            self.get::<GroupRecord>(GROUPS, group_id)?.ok_or_else(|| {
                ApiError::not_found("ResourceNotFoundException", "That group definition does not exist.")
            })?;
            let vid = if req.deployment_type == "Redeployment" {
                let Some(prev) = req.deployment_id.as_deref() else {
                    return Err(ApiError::invalid_input(
                        "Your request is missing the following required parameter(s): {DeploymentId}.",
                    ));
                };
                self.deployment(group_id, prev)?
                    .and_then(|d| d.group_version_id)
                    .ok_or_else(|| ApiError::invalid_input(format!("Deployment ID '{prev}' is invalid.")))?
            } else {
                req.group_version_id.clone().ok_or_else(|| {
                    ApiError::invalid_input(
                        "Your request is missing the following required parameter(s): {GroupVersionId}.",
                    )
                })?
            };
            let version: VersionRecord = self.get(&group_versions_collection(group_id), &vid)?.ok_or_else(|| {
                ApiError::not_found(
                    "ResourceNotFoundException",
                    format!("Version {vid} of Group Definition {group_id} does not exist."),
                )
            })?;
            let gv: GroupVersion = serde_json::from_str(version.definition.get())
                .map_err(|e| ApiError::Internal(format!("stored group version: {e}")))?;
            let bundle = self.resolve(&gv)?;
            let cores = bundle
                .core_definition_version
                .as_ref()
                .and_then(|c| c.cores.as_ref())
                .map_or(0, Vec::len);
            if cores != 1 {
                return Err(ApiError::BadRequest {
                    code: "MissingCoreException",
                    message: r#"{"ErrorDetails":[{"DetailedErrorCode":"GG-303","DetailedErrorMessage":"You need a Greengrass Core in this Group before you can deploy."}]}"#.into(),
                    details: vec![ErrorDetail::new(
                        "GG-303",
                        "You need a Greengrass Core in this Group before you can deploy.",
                    )],
                });
            }
            let did = new_id();
            let now = now();
            let record = DeploymentRecord {
                created_at: now.clone(),
                deployment_arn: self.identity.deployment_arn(group_id, &did),
                deployment_id: did.clone(),
                deployment_type: req.deployment_type.clone(),
                group_arn: version.arn.clone(),
                group_version_id: Some(vid),
                // Validated and resolved: ready for the core to pick up.
                status: "InProgress".into(),
                updated_at: now,
                error_message: None,
                error_details: Vec::new(),
            };
            let response = serde_json::json!({
                "DeploymentArn": record.deployment_arn,
                "DeploymentId": record.deployment_id,
            });
            Ok((response, vec![insert(deployments_collection(group_id), &did, &record)?]))
        })
    }

    pub fn reset_deployments(
        &self,
        group_id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> ApiResult<Value> {
        let req: ResetRequest = crate::wire::parse_body(body)?;
        let answer = self.reset(group_id, token, body, req.force)?;
        self.deployments.notify_one();
        Ok(answer)
    }

    fn reset(
        &self,
        group_id: &str,
        token: Option<&str>,
        body: &[u8],
        force: bool,
    ) -> ApiResult<Value> {
        self.idempotent(
            &format!("ResetDeployments/{group_id}"),
            token,
            &[body],
            || {
                self.get::<GroupRecord>(GROUPS, group_id)?.ok_or_else(|| {
                    ApiError::not_found(
                        "ResourceNotFoundException",
                        "That group definition does not exist.",
                    )
                })?;
                let latest = self.latest_deployment(group_id)?;
                if latest
                    .as_ref()
                    .is_none_or(|d| d.deployment_type.ends_with("ResetDeployment"))
                {
                    return Err(ApiError::not_found(
                        "ResourceNotFoundException",
                        format!(
                            "Group id: {group_id} has not been deployed or has already been reset."
                        ),
                    ));
                }
                let did = new_id();
                let now = now();
                let record = DeploymentRecord {
                    created_at: now.clone(),
                    deployment_arn: self.identity.deployment_arn(group_id, &did),
                    deployment_id: did.clone(),
                    deployment_type: if force {
                        "ForceResetDeployment"
                    } else {
                        "ResetDeployment"
                    }
                    .into(),
                    group_arn: self.identity.group_arn(group_id),
                    group_version_id: None,
                    // A forced reset is done once the control plane forgets the deployment; a plain
                    // one waits for the core to clean up.
                    status: if force { "Success" } else { "InProgress" }.into(),
                    updated_at: now,
                    error_message: None,
                    error_details: Vec::new(),
                };
                let response = serde_json::json!({
                    "DeploymentArn": record.deployment_arn,
                    "DeploymentId": record.deployment_id,
                });
                Ok((
                    response,
                    vec![insert(deployments_collection(group_id), &did, &record)?],
                ))
            },
        )
    }

    /// The most recent deployment of a group.
    pub fn latest_deployment(&self, group_id: &str) -> ApiResult<Option<DeploymentRecord>> {
        let mut after = None;
        let mut last = None;
        loop {
            let items = self
                .store
                .list(&deployments_collection(group_id), after, 1000)?;
            let Some(tail) = items.last() else { break };
            after = Some(tail.seq);
            last = Some(from_json(&tail.value)?);
            if items.len() < 1000 {
                break;
            }
        }
        Ok(last)
    }

    pub fn list_deployments(&self, group_id: &str, page: Page) -> ApiResult<Value> {
        self.group(group_id)?;
        page_json::<DeploymentRecord, _>(
            &*self.store,
            &deployments_collection(group_id),
            page,
            "Deployments",
            |d| {
                serde_json::json!({
                    "CreatedAt": d.created_at,
                    "DeploymentArn": d.deployment_arn,
                    "DeploymentId": d.deployment_id,
                    "DeploymentType": d.deployment_type,
                    "GroupArn": d.group_arn,
                })
            },
        )
    }

    pub fn get_deployment_status(&self, group_id: &str, id: &str) -> ApiResult<Value> {
        let d = self
            .deployment(group_id, id)?
            .ok_or_else(|| ApiError::invalid_input(format!("Deployment '{id}' does not exist.")))?;
        let mut v = serde_json::json!({
            "DeploymentStatus": d.status,
            "DeploymentType": d.deployment_type,
            "UpdatedAt": d.updated_at,
        });
        if let Some(m) = &d.error_message {
            v["ErrorMessage"] = Value::String(m.clone());
        }
        if !d.error_details.is_empty() {
            v["ErrorDetails"] = json(&d.error_details)?;
        }
        Ok(v)
    }

    /// Record a core's progress on a deployment (used by the core runtime).
    pub fn update_deployment_status(
        &self,
        group_id: &str,
        id: &str,
        status: &str,
        error: Option<(String, Vec<StoredErrorDetail>)>,
    ) -> ApiResult<()> {
        let _guard = self.write.lock();
        let mut d = self
            .deployment(group_id, id)?
            .ok_or_else(|| ApiError::invalid_input(format!("Deployment '{id}' does not exist.")))?;
        d.status = status.to_owned();
        d.updated_at = now();
        if let Some((message, details)) = error {
            d.error_message = Some(message);
            d.error_details = details;
        }
        self.store
            .write(&[put(deployments_collection(group_id), id, &d)?])?;
        Ok(())
    }

    // ---- roles ------------------------------------------------------------------------

    fn check_role_arn(arn: &str) -> ApiResult<()> {
        let ok = arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.split_once(":role/"))
            .is_some_and(|(acct, name)| {
                acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
            });
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "RoleArn: {arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )))
        }
    }

    pub fn associate_role(&self, group_id: &str, body: &[u8]) -> ApiResult<Value> {
        let req: RoleRequest = crate::wire::parse_body(body)?;
        Self::check_role_arn(&req.role_arn)?;
        let _guard = self.write.lock();
        let mut group = self.group(group_id)?;
        let at = now();
        group.role = Some(RoleRecord {
            role_arn: req.role_arn,
            associated_at: at.clone(),
        });
        self.store.write(&[put(GROUPS, group_id, &group)?])?;
        Ok(serde_json::json!({ "AssociatedAt": at }))
    }

    pub fn get_role(&self, group_id: &str) -> ApiResult<Value> {
        let role = self.group(group_id)?.role.ok_or_else(|| {
            ApiError::not_found(
                "ResourceNotFoundException",
                "You need to attach an IAM role to this deployment group.",
            )
        })?;
        Ok(serde_json::json!({ "AssociatedAt": role.associated_at, "RoleArn": role.role_arn }))
    }

    pub fn disassociate_role(&self, group_id: &str) -> ApiResult<Value> {
        let _guard = self.write.lock();
        let mut group = self.group(group_id)?;
        group.role = None;
        self.store.write(&[put(GROUPS, group_id, &group)?])?;
        Ok(serde_json::json!({ "DisassociatedAt": now() }))
    }

    pub fn associate_service_role(&self, body: &[u8]) -> ApiResult<Value> {
        let req: RoleRequest = crate::wire::parse_body(body)?;
        Self::check_role_arn(&req.role_arn)?;
        let _guard = self.write.lock();
        let at = now();
        let role = RoleRecord {
            role_arn: req.role_arn,
            associated_at: at.clone(),
        };
        self.store
            .write(&[put("account", "service-role", &role)?])?;
        Ok(serde_json::json!({ "AssociatedAt": at }))
    }

    pub fn get_service_role(&self) -> ApiResult<Value> {
        let role: RoleRecord = self.get("account", "service-role")?.ok_or_else(|| {
            ApiError::not_found(
                "ResourceNotFoundException",
                "You need to attach a service role to your account.",
            )
        })?;
        Ok(serde_json::json!({ "AssociatedAt": role.associated_at, "RoleArn": role.role_arn }))
    }

    pub fn disassociate_service_role(&self) -> ApiResult<Value> {
        let _guard = self.write.lock();
        self.store.write(&[Op::Delete {
            collection: "account".into(),
            key: "service-role".into(),
        }])?;
        Ok(serde_json::json!({ "DisassociatedAt": now() }))
    }

    // ---- certificate authorities ------------------------------------------------------

    pub fn create_group_ca(&self, group_id: &str, token: Option<&str>) -> ApiResult<Value> {
        self.idempotent(
            &format!("CreateGroupCertificateAuthority/{group_id}"),
            token,
            &[],
            || {
                let group = self.group(group_id)?;
                let id = new_id();
                let created =
                    ca::GroupCa::generate(&id, group.info.name.as_deref().unwrap_or(group_id))
                        .map_err(|e| ApiError::Internal(format!("generating the group CA: {e}")))?;
                let arn = self.identity.ca_arn(group_id, &id);
                Ok((
                    serde_json::json!({ "GroupCertificateAuthorityArn": arn }),
                    vec![insert(cas_collection(group_id), &id, &created)?],
                ))
            },
        )
    }

    pub fn list_group_cas(&self, group_id: &str) -> ApiResult<Value> {
        self.group(group_id)?;
        let items = self
            .store
            .list(&cas_collection(group_id), None, usize::MAX)?;
        let list: Vec<Value> = items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "GroupCertificateAuthorityArn": self.identity.ca_arn(group_id, &i.key),
                    "GroupCertificateAuthorityId": i.key,
                })
            })
            .collect();
        Ok(serde_json::json!({ "GroupCertificateAuthorities": list }))
    }

    /// A group's CA by id, with its key (for issuing certificates).
    pub fn group_ca(&self, group_id: &str, ca_id: &str) -> ApiResult<ca::GroupCa> {
        self.group(group_id)?;
        self.get(&cas_collection(group_id), ca_id)?.ok_or_else(|| {
            ApiError::not_found(
                "IdNotFoundException",
                format!("Certificate authority {ca_id} of group {group_id} does not exist."),
            )
        })
    }

    /// The group's current CA: the newest, since creating one rotates.
    pub fn active_group_ca(&self, group_id: &str) -> ApiResult<Option<ca::GroupCa>> {
        self.group(group_id)?;
        let items = self
            .store
            .list(&cas_collection(group_id), None, usize::MAX)?;
        items.last().map(|i| from_json(&i.value)).transpose()
    }

    /// The CA that signs a group's server and device certificates: the newest, created
    /// on first need (Greengrass made one with every group).
    pub fn group_ca_or_create(&self, group_id: &str) -> ApiResult<ca::GroupCa> {
        if let Some(ca) = self.active_group_ca(group_id)? {
            return Ok(ca);
        }
        self.create_group_ca(group_id, None)?;
        self.active_group_ca(group_id)?
            .ok_or_else(|| ApiError::Internal("the new group CA is missing".into()))
    }

    /// How long the core's server certificate lives, in milliseconds.
    pub fn certificate_expiry_ms(&self, group_id: &str) -> ApiResult<u64> {
        Ok(self.group(group_id)?.certificate_expiry_ms)
    }

    /// Coupler's own operation behind `coupler certs issue`: a device key and certificate
    /// signed by the group CA. Without `GroupId`, the group of the newest deployment.
    /// `GET /coupler/cores/{thing}/pending-deployment`: what a remote core applies next
    /// (`null`, answered 204, when nothing waits).
    pub fn core_pending_deployment(&self, thing: &str) -> ApiResult<Value> {
        Self::check_thing(thing)?;
        let Some(p) = self.pending_deployment_for(thing)? else {
            return Ok(Value::Null);
        };
        Ok(serde_json::json!({
            "GroupId": p.group_id,
            "DeploymentId": p.record.deployment_id,
            "DeploymentType": p.record.deployment_type,
            "GroupVersionId": p.record.group_version_id,
            "Group": p.group,
        }))
    }

    /// `PUT /coupler/groups/{id}/deployments/{did}/status`: a remote core's outcome.
    pub fn core_report_deployment(
        &self,
        group_id: &str,
        id: &str,
        body: &[u8],
    ) -> ApiResult<Value> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Report {
            deployment_status: String,
            #[serde(default)]
            error_message: Option<String>,
            #[serde(default)]
            error_details: Vec<StoredErrorDetail>,
        }
        let r: Report = crate::wire::parse_body(body)?;
        if !matches!(
            r.deployment_status.as_str(),
            "Success" | "Failure" | "InProgress"
        ) {
            return Err(ApiError::bad_request(format!(
                "DeploymentStatus: {:?} is not Success, Failure or InProgress",
                r.deployment_status
            )));
        }
        let error = r.error_message.map(|m| (m, r.error_details));
        self.update_deployment_status(group_id, id, &r.deployment_status, error)?;
        Ok(Value::Null)
    }

    /// `POST /coupler/groups/{id}/server-certificate` `{"Names": [...]}`: the MQTT server
    /// certificate of a remote core, from the group CA.
    pub fn core_server_certificate(&self, group_id: &str, body: &[u8]) -> ApiResult<Value> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            names: Vec<String>,
        }
        let r: Request = crate::wire::parse_body(body)?;
        if r.names.is_empty()
            || r.names.len() > 100
            || r.names.iter().any(|n| n.is_empty() || n.len() > 253)
        {
            return Err(ApiError::bad_request(
                "Names: 1 to 100 host names or addresses, each 1 to 253 characters".to_owned(),
            ));
        }
        self.group(group_id)?;
        let c = self.issue_server_certificate(group_id, r.names)?;
        serde_json::to_value(c).map_err(|e| ApiError::Internal(e.to_string()))
    }

    pub fn issue_device_certificate(&self, body: &[u8]) -> ApiResult<Value> {
        let req: DeviceCertificateRequest = crate::wire::parse_body(body)?;
        Self::check_thing(&req.thing_name)?;
        let days = req.validity_days.unwrap_or(365);
        if !(1..=3650).contains(&days) {
            return Err(ApiError::bad_request(format!(
                "ValidityDays: {days} must be from 1 to 3650"
            )));
        }
        let group_id = match req.group_id {
            Some(g) => g,
            None => match self.newest_deployment()? {
                Some((g, _)) => g,
                None => {
                    return Err(ApiError::bad_request(
                        "GroupId: no group has been deployed; name the group".to_owned(),
                    ));
                }
            },
        };
        let ca = self.group_ca_or_create(&group_id)?;
        let issued = ca
            .issue(
                &ca::Usage::Client {
                    thing_name: req.thing_name.clone(),
                },
                time::Duration::days(days),
            )
            .map_err(|e| ApiError::Internal(format!("issuing the certificate: {e}")))?;
        let id = &self.identity;
        Ok(serde_json::json!({
            "GroupId": group_id,
            "ThingName": req.thing_name,
            "ThingArn": format!("arn:aws:iot:{}:{}:thing/{}", id.region, id.account_id, req.thing_name),
            "CertificateId": issued.certificate_id,
            "CertificateArn": format!("arn:aws:iot:{}:{}:cert/{}", id.region, id.account_id, issued.certificate_id),
            "CertificatePem": issued.certificate_pem,
            "PrivateKeyPem": issued.private_key_pem,
            "GroupCertificateAuthorityPem": ca.certificate_pem,
        }))
    }

    pub fn get_group_ca(&self, group_id: &str, ca_id: &str) -> ApiResult<Value> {
        let ca = self.group_ca(group_id, ca_id)?;
        Ok(serde_json::json!({
            "GroupCertificateAuthorityArn": self.identity.ca_arn(group_id, ca_id),
            "GroupCertificateAuthorityId": ca_id,
            "PemEncodedCertificate": ca.certificate_pem,
        }))
    }

    pub fn get_certificate_configuration(&self, group_id: &str) -> ApiResult<Value> {
        let group = self.group(group_id)?;
        Ok(serde_json::json!({
            "CertificateAuthorityExpiryInMilliseconds": ca::CA_VALIDITY_MS.to_string(),
            "CertificateExpiryInMilliseconds": group.certificate_expiry_ms.to_string(),
            "GroupId": group_id,
        }))
    }

    pub fn update_certificate_configuration(
        &self,
        group_id: &str,
        body: &[u8],
    ) -> ApiResult<Value> {
        let req: CertificateConfigurationRequest = crate::wire::parse_body(body)?;
        let _guard = self.write.lock();
        let mut group = self.group(group_id)?;
        if let Some(ms) = req.certificate_expiry_ms {
            group.certificate_expiry_ms = ms
                .parse::<u64>()
                .ok()
                .filter(|v| ca::CERTIFICATE_EXPIRY_MS.contains(v))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "CertificateExpiryInMilliseconds: {ms:?} must be from {} (7 days) to {} (30 days)",
                        ca::CERTIFICATE_EXPIRY_MS.start(),
                        ca::CERTIFICATE_EXPIRY_MS.end()
                    ))
                })?;
            self.store.write(&[put(GROUPS, group_id, &group)?])?;
        }
        drop(_guard);
        self.get_certificate_configuration(group_id)
    }

    // ---- things -----------------------------------------------------------------------

    fn check_thing(name: &str) -> ApiResult<()> {
        if coupler_model::arn::is_valid_id(name) {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "ThingName: {name:?} must be 1-128 characters of [a-zA-Z0-9:_-]"
            )))
        }
    }

    pub fn get_connectivity(&self, thing: &str) -> ApiResult<Value> {
        Self::check_thing(thing)?;
        let info: Vec<ConnectivityInfo> = self.get("connectivity", thing)?.unwrap_or_default();
        Ok(serde_json::json!({ "ConnectivityInfo": info }))
    }

    pub fn update_connectivity(&self, thing: &str, body: &[u8]) -> ApiResult<Value> {
        Self::check_thing(thing)?;
        let req: ConnectivityRequest = crate::wire::parse_body(body)?;
        for (i, c) in req.connectivity_info.iter().enumerate() {
            if c.host_address.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(format!(
                    "ConnectivityInfo[{i}].HostAddress is required"
                )));
            }
            if let Some(p) = c.port_number
                && !(1..=65535).contains(&p)
            {
                return Err(ApiError::bad_request(format!(
                    "ConnectivityInfo[{i}].PortNumber: {p} is not a port (1-65535)"
                )));
            }
        }
        let _guard = self.write.lock();
        self.store
            .write(&[put("connectivity", thing, &req.connectivity_info)?])?;
        Ok(serde_json::json!({ "message": "Connectivity info updated.", "Version": new_id() }))
    }

    pub fn get_runtime_configuration(&self, thing: &str) -> ApiResult<Value> {
        Self::check_thing(thing)?;
        let telemetry: String = self
            .get("runtime-config", thing)?
            .unwrap_or_else(|| "On".into());
        Ok(serde_json::json!({
            "RuntimeConfiguration": {
                "TelemetryConfiguration": { "ConfigurationSyncStatus": "InSync", "Telemetry": telemetry }
            }
        }))
    }

    pub fn update_runtime_configuration(&self, thing: &str, body: &[u8]) -> ApiResult<Value> {
        Self::check_thing(thing)?;
        let req: RuntimeConfigurationRequest = crate::wire::parse_body(body)?;
        if let Some(t) = req.telemetry_configuration {
            if !matches!(t.telemetry.as_str(), "On" | "Off") {
                return Err(ApiError::bad_request(format!(
                    "TelemetryConfiguration.Telemetry: {:?} is not On or Off",
                    t.telemetry
                )));
            }
            let _guard = self.write.lock();
            self.store
                .write(&[put("runtime-config", thing, &t.telemetry)?])?;
        }
        Ok(Value::Object(Default::default()))
    }

    // ---- tags -------------------------------------------------------------------------

    fn with_tags<R>(&self, arn: &str, f: impl FnOnce(&mut Tags) -> R) -> ApiResult<(R, Op)> {
        let not_found = || {
            ApiError::not_found(
                "ResourceNotFoundException",
                format!("Resource {arn} does not exist."),
            )
        };
        match self.identity.parse_taggable(arn).ok_or_else(not_found)? {
            Taggable::Definition(kind, id) => {
                let mut def = self
                    .get::<DefinitionRecord>(&definitions_collection(kind), &id)?
                    .ok_or_else(not_found)?;
                let r = f(&mut def.tags);
                Ok((r, put(definitions_collection(kind), id, &def)?))
            }
            Taggable::Group(id) => {
                let mut group = self
                    .get::<GroupRecord>(GROUPS, &id)?
                    .ok_or_else(not_found)?;
                let r = f(&mut group.info.tags);
                Ok((r, put(GROUPS, id, &group)?))
            }
        }
    }

    pub fn list_tags(&self, arn: &str) -> ApiResult<Value> {
        let (tags, _) = self.with_tags(arn, |t| t.clone())?;
        Ok(serde_json::json!({ "tags": tags }))
    }

    pub fn tag_resource(&self, arn: &str, body: &[u8]) -> ApiResult<Value> {
        let req: TagRequest = crate::wire::parse_body(body)?;
        let _guard = self.write.lock();
        let (result, op) = self.with_tags(arn, |t| {
            t.extend(req.tags);
            check_tags(t)
        })?;
        result?;
        self.store.write(&[op])?;
        Ok(Value::Null)
    }

    pub fn untag_resource(&self, arn: &str, keys: &[String]) -> ApiResult<Value> {
        if keys.is_empty() {
            return Err(ApiError::bad_request("tagKeys is required"));
        }
        let _guard = self.write.lock();
        let ((), op) = self.with_tags(arn, |t| {
            for k in keys {
                t.remove(k);
            }
        })?;
        self.store.write(&[op])?;
        Ok(Value::Null)
    }
}
