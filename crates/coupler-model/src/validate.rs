//! Group-version validation: every problem, each with its path.
//!
//! [`validate`] reads a [`GroupBundle`] and either returns a [`ValidatedGroup`], in which every
//! ARN, topic filter and connector parameter has been parsed into its typed form, or the full
//! list of [`Problem`]s. The same function serves `coupler validate`, the control-plane API and
//! the deployment agent, so a group is judged by one set of rules everywhere.
//! The rules are listed in `docs/validation.md`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::api::{
    self, EncodingType, IsolationMode, Logger, LoggerComponent, LoggerType, Permission, Resource,
    items,
};
use crate::arn::{
    CertificateArn, ConnectorArn, DefinitionKind, LambdaArn, Qualifier, SecretArn, ThingArn,
    is_valid_id,
};
use crate::bundle::GroupBundle;
use crate::catalog::{Catalog, ConnectorVersion, ResourceKind, check_value};
use crate::entity::Entity;
use crate::topic::TopicFilter;

/// Maps of a group's names and ARNs. foldhash hashes them several times faster than the
/// standard SipHash (hashing was a visible part of validating a group with many
/// subscriptions), and its per-map random seed keeps crafted collisions impractical.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Greengrass quotas (AWS General Reference, Greengrass V1 quotas).
pub mod limits {
    pub const DEVICES_PER_GROUP: usize = 2500;
    pub const FUNCTIONS_PER_GROUP: usize = 200;
    pub const RESOURCES_PER_GROUP: usize = 200;
    pub const RESOURCES_PER_FUNCTION: usize = 20;
    pub const SUBSCRIPTIONS_PER_GROUP: usize = 10_000;
    pub const CORE_THING_NAME_BYTES: usize = 124;
    /// Seconds. Coupler's sanity bound; Greengrass documents none.
    pub const TIMEOUT_SECS: std::ops::RangeInclusive<i64> = 1..=86_400;
    /// Kilobytes: 1 MiB to 16 GiB. Coupler's sanity bound; Greengrass documents none.
    pub const MEMORY_KB: std::ops::RangeInclusive<i64> = 1024..=16 * 1024 * 1024;
    /// The smallest spool `GGCloudSpooler` accepts.
    pub const MIN_SPOOL_BYTES: i64 = 262_144;
}

/// Settings of the core that the group is judged against.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The core's `runtime.allowFunctionsToRunAsRoot` opt-in.
    pub allow_functions_to_run_as_root: bool,
}

/// One thing wrong with a group, at a path such as `ConnectorDefinitionVersion.Connectors[1].Id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The core of the group.
#[derive(Debug, Clone)]
pub struct CoreSpec {
    pub id: String,
    pub thing: ThingArn,
    pub certificate: CertificateArn,
    pub sync_shadow: bool,
}

#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub id: String,
    pub thing: ThingArn,
    pub certificate: CertificateArn,
    pub sync_shadow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub id: String,
    pub arn: LambdaArn,
    pub isolation: IsolationMode,
    /// The function's own `RunAs`, else the group default's.
    pub run_as: Option<api::FunctionRunAsConfig>,
    pub pinned: bool,
    pub timeout_secs: i64,
    pub memory_kb: Option<i64>,
    pub encoding: EncodingType,
    pub config: api::FunctionConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorSpec {
    pub id: String,
    pub arn: ConnectorArn,
    /// Parameters as given, with documented defaults filled in.
    pub parameters: BTreeMap<String, String>,
    pub isolation: IsolationMode,
}

/// A subscription with its ends resolved and its subject parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub id: String,
    pub source: Entity,
    pub subject: TopicFilter,
    pub target: Entity,
}

/// A group that passed validation, in typed form.
#[derive(Debug, Clone)]
pub struct ValidatedGroup {
    pub core: CoreSpec,
    pub devices: Vec<DeviceSpec>,
    pub functions: Vec<FunctionSpec>,
    pub connectors: Vec<ConnectorSpec>,
    pub resources: Vec<Resource>,
    pub routes: Vec<Route>,
    pub loggers: Vec<Logger>,
    /// The group's default identity (`DefaultConfig.Execution.RunAs` of its function
    /// definition), which its connectors run as too; checked like a function's.
    pub default_run_as: Option<api::FunctionRunAsConfig>,
}

impl ValidatedGroup {
    /// A one-line summary, e.g. for `coupler validate`.
    pub fn summary(&self) -> String {
        format!(
            "core {}: {} device(s), {} function(s), {} connector(s), {} resource(s), {} subscription(s), {} logger(s)",
            self.core.thing.thing_name(),
            self.devices.len(),
            self.functions.len(),
            self.connectors.len(),
            self.resources.len(),
            self.routes.len(),
            self.loggers.len()
        )
    }
}

/// Greengrass system functions that a function definition may configure.
const CONFIGURABLE_SYSTEM_FUNCTIONS: [&str; 3] =
    ["GGIPDetector", "GGCloudSpooler", "GGStreamManager"];
/// System functions whose `Execution` settings Greengrass rejects.
const NO_EXECUTION_SYSTEM_FUNCTIONS: [&str; 2] = ["GGIPDetector", "GGCloudSpooler"];

/// How much of a group is being judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// A whole group: references between definitions must resolve.
    Group,
    /// One definition version on its own (the API's `Create…DefinitionVersion`): only the
    /// rules that need no other definition apply.
    Definition,
}

/// The path of a list item, `List[i]`, formatted only when a problem is reported.
#[derive(Clone, Copy)]
struct Item<'a>(&'a str, usize);

impl fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// The path of an item's parameters, `List[i].Parameters`, formatted only when reported.
#[derive(Clone, Copy)]
struct Parameters<'a>(Item<'a>);

impl fmt::Display for Parameters<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.Parameters", self.0)
    }
}

struct Checker<'a> {
    problems: Vec<Problem>,
    catalog: &'a Catalog,
    options: &'a Options,
    scope: Scope,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Check the ids of a list: valid and unique. Returns nothing; problems are recorded.
    fn ids<'b>(&mut self, base: &str, ids: impl ExactSizeIterator<Item = &'b str>) {
        let mut seen: HashMap<&str, usize> =
            HashMap::with_capacity_and_hasher(ids.len(), Default::default());
        for (i, id) in ids.enumerate() {
            if !is_valid_id(id) {
                self.err(
                    format!("{base}[{i}].Id"),
                    format!("{id:?} must be 1-128 characters of [a-zA-Z0-9:_-]"),
                );
            }
            if let Some(first) = seen.insert(id, i) {
                self.err(
                    format!("{base}[{i}].Id"),
                    format!("{id:?} is already the id of {base}[{first}]"),
                );
            }
        }
    }

    fn quota(&mut self, path: &str, what: &str, n: usize, max: usize) {
        if n > max {
            self.err(path, format!("{n} {what}; a group may hold at most {max}"));
        }
    }
}

/// What a resource id refers to, for the checks of functions and connectors.
struct ResourceInfo<'a> {
    kind: ResourceKind,
    resource: &'a Resource,
}

fn resource_kind(c: &api::ResourceDataContainer) -> Option<ResourceKind> {
    let kinds = [
        c.local_device_resource_data
            .as_ref()
            .map(|_| ResourceKind::LocalDevice),
        c.local_volume_resource_data
            .as_ref()
            .map(|_| ResourceKind::LocalVolume),
        c.s3_machine_learning_model_resource_data
            .as_ref()
            .map(|_| ResourceKind::MachineLearning),
        c.sage_maker_machine_learning_model_resource_data
            .as_ref()
            .map(|_| ResourceKind::MachineLearning),
        c.secrets_manager_secret_resource_data
            .as_ref()
            .map(|_| ResourceKind::Secret),
    ];
    let mut present = kinds.into_iter().flatten();
    let first = present.next();
    if present.next().is_some() {
        None
    } else {
        first
    }
}

/// The `OwnerSetting` of a machine-learning resource.
fn ml_owner(c: &api::ResourceDataContainer) -> Option<&api::ResourceDownloadOwnerSetting> {
    c.s3_machine_learning_model_resource_data
        .as_ref()
        .and_then(|m| m.owner_setting.as_ref())
        .or_else(|| {
            c.sage_maker_machine_learning_model_resource_data
                .as_ref()
                .and_then(|m| m.owner_setting.as_ref())
        })
}

fn is_under(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn check_abs_path(ck: &mut Checker<'_>, path: &str, value: Option<&str>) -> Option<String> {
    match value {
        None | Some("") => {
            ck.err(path, "is required");
            None
        }
        Some(p) if !p.starts_with('/') => {
            ck.err(path, format!("{p:?} must be an absolute path"));
            None
        }
        Some(p) if p.split('/').any(|seg| seg == "..") => {
            ck.err(path, format!("{p:?} may not contain '..'"));
            None
        }
        Some(p) => Some(p.trim_end_matches('/').to_owned())
            .map(|s| if s.is_empty() { "/".into() } else { s }),
    }
}

/// Validate a group bundle against the Greengrass rules and this core's options.
pub fn validate(bundle: &GroupBundle, options: &Options) -> Result<ValidatedGroup, Vec<Problem>> {
    validate_with(bundle, options, Catalog::builtin())
}

/// [`validate`] against a given connector catalog.
pub fn validate_with(
    bundle: &GroupBundle,
    options: &Options,
    catalog: &Catalog,
) -> Result<ValidatedGroup, Vec<Problem>> {
    let mut ck = Checker {
        problems: Vec::new(),
        catalog,
        options,
        scope: Scope::Group,
    };
    let core = check_core(&mut ck, bundle);
    let devices = check_devices(&mut ck, bundle, core.as_ref());
    let resources = check_resources(&mut ck, bundle);
    let functions = check_functions(&mut ck, bundle, &resources);
    let default_exec = bundle
        .function_definition_version
        .as_ref()
        .and_then(|f| f.default_config.as_ref())
        .and_then(|d| d.execution.as_ref());
    let group_default = default_exec
        .and_then(|e| e.isolation_mode)
        .unwrap_or(IsolationMode::GreengrassContainer);
    let default_run_as = default_exec.and_then(|e| e.run_as);
    let connectors = check_connectors(&mut ck, bundle, &resources, group_default);
    let routes = check_subscriptions(&mut ck, bundle, &devices, &functions, &connectors);
    check_loggers(&mut ck, bundle);

    match core {
        Some(core) if ck.problems.is_empty() => Ok(ValidatedGroup {
            core,
            devices,
            functions,
            connectors: connectors.into_iter().map(|(spec, _)| spec).collect(),
            resources: resources.values().map(|r| r.resource.clone()).collect(),
            routes,
            loggers: bundle
                .logger_definition_version
                .as_ref()
                .map(|l| items(&l.loggers).to_vec())
                .unwrap_or_default(),
            default_run_as,
        }),
        _ => Err(ck.problems),
    }
}

/// Judge one definition version on its own, as `Create…DefinitionVersion` does: its shape
/// must already be right (see [`crate::bundle::parse_document`]); this applies every rule that
/// needs no other definition. Paths are relative to the payload (`Connectors[1].Id`).
pub fn validate_definition(kind: DefinitionKind, payload: &serde_json::Value) -> Vec<Problem> {
    match GroupBundle::with_definition(kind, payload.to_string().as_bytes()) {
        Ok(bundle) => validate_definition_in(kind, &bundle),
        Err(e) => vec![Problem {
            path: "(document)".into(),
            message: e.to_string(),
        }],
    }
}

/// [`validate_definition`] on a bundle that holds only the payload of `kind` (as
/// [`GroupBundle::with_definition`] makes).
pub fn validate_definition_in(kind: DefinitionKind, bundle: &GroupBundle) -> Vec<Problem> {
    // Root is the core's decision, checked when it deploys.
    let options = Options {
        allow_functions_to_run_as_root: true,
    };
    let mut ck = Checker {
        problems: Vec::new(),
        catalog: Catalog::builtin(),
        options: &options,
        scope: Scope::Definition,
    };
    let core = check_core(&mut ck, bundle);
    let devices = check_devices(&mut ck, bundle, core.as_ref());
    let resources = check_resources(&mut ck, bundle);
    let functions = check_functions(&mut ck, bundle, &resources);
    let connectors = check_connectors(
        &mut ck,
        bundle,
        &resources,
        IsolationMode::GreengrassContainer,
    );
    check_subscriptions(&mut ck, bundle, &devices, &functions, &connectors);
    check_loggers(&mut ck, bundle);
    let prefix = format!("{}.", definition_key(kind));
    ck.problems
        .into_iter()
        .map(|p| Problem {
            path: p.path.strip_prefix(&prefix).unwrap_or(&p.path).to_owned(),
            // Messages that name another item of the list name it the same way.
            message: p.message.replace(&prefix, ""),
        })
        .collect()
}

/// The bundle key of a definition kind.
pub fn definition_key(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Connectors => "ConnectorDefinitionVersion",
        DefinitionKind::Cores => "CoreDefinitionVersion",
        DefinitionKind::Devices => "DeviceDefinitionVersion",
        DefinitionKind::Functions => "FunctionDefinitionVersion",
        DefinitionKind::Loggers => "LoggerDefinitionVersion",
        DefinitionKind::Resources => "ResourceDefinitionVersion",
        DefinitionKind::Subscriptions => "SubscriptionDefinitionVersion",
    }
}

fn check_core(ck: &mut Checker<'_>, bundle: &GroupBundle) -> Option<CoreSpec> {
    const BASE: &str = "CoreDefinitionVersion.Cores";
    let cores = bundle
        .core_definition_version
        .as_ref()
        .map(|c| items(&c.cores))
        .unwrap_or_default();
    match cores.len() {
        _ if ck.scope == Scope::Definition => {}
        0 => {
            ck.err(
                "CoreDefinitionVersion",
                "GG-303: You need a Greengrass Core in this Group before you can deploy.",
            );
            return None;
        }
        1 => {}
        n => ck.err(BASE, format!("a group has exactly one core; found {n}")),
    }
    ck.ids(BASE, cores.iter().map(|c| c.id.as_str()));
    let mut spec = None;
    for (i, c) in cores.iter().enumerate() {
        let thing = ThingArn::parse(&c.thing_arn)
            .map_err(|e| ck.err(format!("{BASE}[{i}].ThingArn"), e.to_string()))
            .ok();
        if let Some(t) = &thing
            && t.thing_name().len() > limits::CORE_THING_NAME_BYTES
        {
            ck.err(
                format!("{BASE}[{i}].ThingArn"),
                format!(
                    "the core's thing name is {} bytes; the limit is {}",
                    t.thing_name().len(),
                    limits::CORE_THING_NAME_BYTES
                ),
            );
        }
        let cert = CertificateArn::parse(&c.certificate_arn)
            .map_err(|e| ck.err(format!("{BASE}[{i}].CertificateArn"), e.to_string()))
            .ok();
        if let (Some(thing), Some(certificate), 0) = (thing, cert, i) {
            spec = Some(CoreSpec {
                id: c.id.clone(),
                thing,
                certificate,
                sync_shadow: c.sync_shadow.unwrap_or(false),
            });
        }
    }
    spec
}

fn check_devices(
    ck: &mut Checker<'_>,
    bundle: &GroupBundle,
    core: Option<&CoreSpec>,
) -> Vec<DeviceSpec> {
    const BASE: &str = "DeviceDefinitionVersion.Devices";
    let devices = bundle
        .device_definition_version
        .as_ref()
        .map(|d| items(&d.devices))
        .unwrap_or_default();
    ck.quota(
        "DeviceDefinitionVersion.Devices",
        "devices",
        devices.len(),
        limits::DEVICES_PER_GROUP,
    );
    ck.ids(BASE, devices.iter().map(|d| d.id.as_str()));
    // Keyed by the name within the ARN's text (it ends the ARN), so nothing is copied.
    let mut things: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(devices.len(), Default::default());
    let mut out = Vec::with_capacity(devices.len());
    for (i, d) in devices.iter().enumerate() {
        let at = Item(BASE, i);
        let thing = match ThingArn::parse(&d.thing_arn) {
            Ok(t) => t,
            Err(e) => {
                ck.err(format!("{at}.ThingArn"), e.to_string());
                continue;
            }
        };
        let name = &d.thing_arn[d.thing_arn.len() - thing.thing_name().len()..];
        if let Some(first) = things.insert(name, i) {
            ck.err(
                format!("{at}.ThingArn"),
                format!("thing {name:?} is already {BASE}[{first}]"),
            );
        }
        if core.is_some_and(|c| c.thing.thing_name() == name) {
            ck.err(
                format!("{at}.ThingArn"),
                format!("thing {name:?} is the group's core, not a device"),
            );
        }
        match CertificateArn::parse(&d.certificate_arn) {
            Ok(certificate) => out.push(DeviceSpec {
                id: d.id.clone(),
                thing,
                certificate,
                sync_shadow: d.sync_shadow.unwrap_or(false),
            }),
            Err(e) => ck.err(format!("{at}.CertificateArn"), e.to_string()),
        }
    }
    out
}

fn check_resources<'b>(
    ck: &mut Checker<'_>,
    bundle: &'b GroupBundle,
) -> BTreeMap<String, ResourceInfo<'b>> {
    const BASE: &str = "ResourceDefinitionVersion.Resources";
    let resources = bundle
        .resource_definition_version
        .as_ref()
        .map(|r| items(&r.resources))
        .unwrap_or_default();
    ck.quota(
        BASE,
        "resources",
        resources.len(),
        limits::RESOURCES_PER_GROUP,
    );
    ck.ids(BASE, resources.iter().map(|r| r.id.as_str()));
    let mut names: HashMap<&str, usize> = HashMap::default();
    let mut secrets: HashMap<String, usize> = HashMap::default();
    let mut out = BTreeMap::new();
    for (i, r) in resources.iter().enumerate() {
        let at = Item(BASE, i);
        if !is_valid_id(&r.name) {
            ck.err(
                format!("{at}.Name"),
                format!("{:?} must be 1-128 characters of [a-zA-Z0-9:_-]", r.name),
            );
        }
        if let Some(first) = names.insert(&r.name, i) {
            ck.err(
                format!("{at}.Name"),
                format!("{:?} is already the name of {BASE}[{first}]", r.name),
            );
        }
        let c = &r.resource_data_container;
        let container = format!("{at}.ResourceDataContainer");
        let Some(kind) = resource_kind(c) else {
            ck.err(
                container,
                "must hold exactly one of LocalDeviceResourceData, LocalVolumeResourceData, S3MachineLearningModelResourceData, SageMakerMachineLearningModelResourceData, SecretsManagerSecretResourceData",
            );
            continue;
        };
        if let Some(d) = &c.local_device_resource_data {
            let p = format!("{container}.LocalDeviceResourceData.SourcePath");
            if let Some(src) = check_abs_path(ck, &p, d.source_path.as_deref()) {
                if !is_under(&src, "/dev") || src == "/dev" {
                    ck.err(
                        p,
                        format!("Device resource path should begin with /dev, but got: {src}"),
                    );
                } else if is_under(&src, "/dev/shm") {
                    // core-semantics §4.1: /dev/shm is shared memory, not a device; it can
                    // only be a (rw) volume resource.
                    ck.err(
                        p,
                        format!("{src} is shared memory, not a device: /dev/shm can only be a local volume resource"),
                    );
                }
            }
        }
        if let Some(v) = &c.local_volume_resource_data {
            let p = format!("{container}.LocalVolumeResourceData");
            if let Some(src) =
                check_abs_path(ck, &format!("{p}.SourcePath"), v.source_path.as_deref())
            {
                if is_under(&src, "/sys") {
                    ck.err(format!("{p}.SourcePath"), "Accessing /sys is prohibited");
                } else if is_under(&src, "/dev") && src != "/dev/shm" {
                    ck.err(
                        format!("{p}.SourcePath"),
                        format!("{src} is under /dev: use a local device resource (only /dev/shm can be a volume)"),
                    );
                } else if is_under(&src, "/var") {
                    ck.err(
                        format!("{p}.SourcePath"),
                        format!("{src} is under /var, which Greengrass does not allow as a volume source: mount it elsewhere first"),
                    );
                }
            }
            if let Some(dst) = check_abs_path(
                ck,
                &format!("{p}.DestinationPath"),
                v.destination_path.as_deref(),
            ) && is_under(&dst, "/proc")
            {
                ck.err(
                    format!("{p}.DestinationPath"),
                    "the destination may not be /proc or under it",
                );
            }
        }
        if let Some(m) = &c.s3_machine_learning_model_resource_data {
            let p = format!("{container}.S3MachineLearningModelResourceData");
            match m.s3_uri.as_deref() {
                Some(u)
                    if u.starts_with("s3://")
                        && (u.ends_with(".tar.gz") || u.ends_with(".zip")) => {}
                Some(u) => ck.err(
                    format!("{p}.S3Uri"),
                    format!("{u:?} must be an s3:// URI of a .tar.gz or .zip archive"),
                ),
                None => ck.err(format!("{p}.S3Uri"), "is required"),
            }
            check_abs_path(
                ck,
                &format!("{p}.DestinationPath"),
                m.destination_path.as_deref(),
            );
        }
        if let Some(m) = &c.sage_maker_machine_learning_model_resource_data {
            let p = format!("{container}.SageMakerMachineLearningModelResourceData");
            match m.sage_maker_job_arn.as_deref() {
                Some(a) if a.starts_with("arn:aws:sagemaker:") && a.contains(":training-job/") => {}
                Some(a) => ck.err(
                    format!("{p}.SageMakerJobArn"),
                    format!("{a:?} is not a SageMaker training job ARN (arn:aws:sagemaker:REGION:ACCOUNT:training-job/NAME)"),
                ),
                None => ck.err(format!("{p}.SageMakerJobArn"), "is required"),
            }
            check_abs_path(
                ck,
                &format!("{p}.DestinationPath"),
                m.destination_path.as_deref(),
            );
        }
        if let Some(s) = &c.secrets_manager_secret_resource_data {
            let p = format!("{container}.SecretsManagerSecretResourceData");
            match s.arn.as_deref().map(SecretArn::parse) {
                None => ck.err(format!("{p}.ARN"), "is required"),
                Some(Err(e)) => ck.err(format!("{p}.ARN"), e.to_string()),
                Some(Ok(arn)) => {
                    if !arn.secret_name().starts_with("greengrass-") {
                        ck.err(
                            format!("{p}.ARN"),
                            format!(
                                "secret name {:?} must start with \"greengrass-\" for the core to be allowed to read it",
                                arn.secret_name()
                            ),
                        );
                    }
                    if let Some(first) = secrets.insert(arn.secret_name().to_owned(), i) {
                        ck.err(
                            format!("{p}.ARN"),
                            format!("the secret is already referenced by {BASE}[{first}]; a group may reference a secret once"),
                        );
                    }
                }
            }
            for (j, label) in items(&s.additional_staging_labels_to_download)
                .iter()
                .enumerate()
            {
                if label.is_empty() || label.len() > 256 {
                    ck.err(
                        format!("{p}.AdditionalStagingLabelsToDownload[{j}]"),
                        "a staging label is 1-256 characters",
                    );
                }
            }
        }
        out.entry(r.id.clone())
            .or_insert(ResourceInfo { kind, resource: r });
    }
    out
}

fn check_functions(
    ck: &mut Checker<'_>,
    bundle: &GroupBundle,
    resources: &BTreeMap<String, ResourceInfo<'_>>,
) -> Vec<FunctionSpec> {
    const BASE: &str = "FunctionDefinitionVersion.Functions";
    let Some(def) = bundle.function_definition_version.as_ref() else {
        return Vec::new();
    };
    let default_exec = def
        .default_config
        .as_ref()
        .and_then(|d| d.execution.as_ref());
    let default_isolation = default_exec
        .and_then(|e| e.isolation_mode)
        .unwrap_or(IsolationMode::GreengrassContainer);
    let default_run_as = default_exec.and_then(|e| e.run_as);
    if let Some(run_as) = default_run_as {
        check_run_as(
            ck,
            "FunctionDefinitionVersion.DefaultConfig.Execution.RunAs",
            run_as,
            default_isolation,
        );
    }
    let functions = items(&def.functions);
    ck.quota(
        BASE,
        "functions",
        functions.len(),
        limits::FUNCTIONS_PER_GROUP,
    );
    ck.ids(BASE, functions.iter().map(|f| f.id.as_str()));
    let mut arns: HashMap<&str, usize> = HashMap::default();
    let mut out = Vec::new();
    for (i, f) in functions.iter().enumerate() {
        let at = Item(BASE, i);
        let Some(arn_text) = f.function_arn.as_deref() else {
            ck.err(format!("{at}.FunctionArn"), "is required");
            continue;
        };
        if let Some(first) = arns.insert(arn_text, i) {
            ck.err(
                format!("{at}.FunctionArn"),
                format!("{arn_text:?} is already {BASE}[{first}]"),
            );
        }
        let arn = match LambdaArn::parse(arn_text) {
            Ok(a) => a,
            Err(e) => {
                ck.err(format!("{at}.FunctionArn"), e.to_string());
                continue;
            }
        };
        match arn.qualifier() {
            None => ck.err(
                format!("{at}.FunctionArn"),
                "must name a version or an alias (…:function:NAME:ALIAS); an unqualified ARN cannot be deployed",
            ),
            Some(Qualifier::Latest) => ck.err(
                format!("{at}.FunctionArn"),
                "$LATEST is not supported in Greengrass groups; use a version or an alias",
            ),
            Some(_) => {}
        }
        let system = arn.is_system();
        if system && !CONFIGURABLE_SYSTEM_FUNCTIONS.contains(&arn.function_name()) {
            ck.err(
                format!("{at}.FunctionArn"),
                format!(
                    "{:?} is not a system function a group can configure ({})",
                    arn.function_name(),
                    CONFIGURABLE_SYSTEM_FUNCTIONS.join(", ")
                ),
            );
        }
        let config = f.function_configuration.clone().unwrap_or_default();
        let cfg = format!("{at}.FunctionConfiguration");
        let env = config.environment.clone().unwrap_or_default();
        let exec = env.execution.clone().unwrap_or_default();
        if system
            && NO_EXECUTION_SYSTEM_FUNCTIONS.contains(&arn.function_name())
            && env.execution.is_some()
        {
            ck.err(
                format!("{cfg}.Environment.Execution"),
                format!("Execution configuration for function with arn {arn} is not allowed"),
            );
        }
        if !system && config.executable.as_deref().is_none_or(str::is_empty) {
            ck.err(
                format!("{cfg}.Executable"),
                "is required: the handler (module.function) or the binary to run",
            );
        }
        let isolation = exec.isolation_mode.unwrap_or(default_isolation);
        let timeout = config.timeout.unwrap_or(3);
        if !limits::TIMEOUT_SECS.contains(&timeout) {
            ck.err(
                format!("{cfg}.Timeout"),
                format!(
                    "{timeout} seconds is out of range {}..={}",
                    limits::TIMEOUT_SECS.start(),
                    limits::TIMEOUT_SECS.end()
                ),
            );
        }
        match (isolation, config.memory_size) {
            (IsolationMode::NoContainer, Some(_)) if !system => ck.err(
                format!("{cfg}.MemorySize"),
                "is not allowed for a function running without a container (NoContainer): remove it",
            ),
            (IsolationMode::GreengrassContainer, None) if !system => ck.err(
                format!("{cfg}.MemorySize"),
                "is required for a function running in a Greengrass container",
            ),
            (_, Some(m)) if !limits::MEMORY_KB.contains(&m) => ck.err(
                format!("{cfg}.MemorySize"),
                format!(
                    "{m} KB is out of range {}..={} KB",
                    limits::MEMORY_KB.start(),
                    limits::MEMORY_KB.end()
                ),
            ),
            _ => {}
        }
        if isolation == IsolationMode::NoContainer && env.access_sysfs == Some(true) {
            ck.err(
                format!("{cfg}.Environment.AccessSysfs"),
                "is only allowed for functions running in a Greengrass container",
            );
        }
        if let Some(run_as) = exec.run_as.or(default_run_as) {
            let path = if exec.run_as.is_some() {
                format!("{cfg}.Environment.Execution.RunAs")
            } else {
                "FunctionDefinitionVersion.DefaultConfig.Execution.RunAs".to_owned()
            };
            if exec.run_as.is_some() {
                check_run_as(ck, &path, run_as, isolation);
            } else if is_root(run_as)
                && isolation == IsolationMode::GreengrassContainer
                // Only when the function chose the container itself: when the identity and
                // the isolation both come from the default, the default is what is wrong, and
                // it is reported once, at DefaultConfig (a system function such as
                // GGCloudSpooler could not even follow advice to set its own Execution).
                && exec.isolation_mode.is_some()
            {
                ck.err(
                    format!("{cfg}.Environment.Execution.IsolationMode"),
                    "the group's default identity is root, which requires NoContainer",
                );
            }
        }
        for (name, _) in env.variables.iter().flatten() {
            let ok = name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                ck.err(
                    format!("{cfg}.Environment.Variables.{name}"),
                    "is not a valid environment variable name ([a-zA-Z_][a-zA-Z0-9_]*)",
                );
            }
        }
        // The spooler's variables mean something only to the system function, not to a user
        // Lambda that happens to have the same name.
        if system && arn.function_name() == "GGCloudSpooler" {
            check_spooler(ck, &cfg, env.variables.as_ref());
        }
        check_resource_access(ck, &cfg, &arn, isolation, &env, resources);
        out.push(FunctionSpec {
            id: f.id.clone(),
            arn,
            isolation,
            run_as: exec.run_as.or(default_run_as),
            pinned: config.pinned.unwrap_or(false),
            timeout_secs: timeout,
            memory_kb: config.memory_size,
            encoding: config.encoding_type.unwrap_or(EncodingType::Json),
            config,
        });
    }
    out
}

fn is_root(r: api::FunctionRunAsConfig) -> bool {
    r.uid == Some(0) || r.gid == Some(0)
}

fn check_run_as(
    ck: &mut Checker<'_>,
    path: &str,
    run_as: api::FunctionRunAsConfig,
    isolation: IsolationMode,
) {
    for (field, v) in [("Uid", run_as.uid), ("Gid", run_as.gid)] {
        if let Some(v) = v
            && !(0..=i64::from(u32::MAX - 1)).contains(&v)
        {
            ck.err(format!("{path}.{field}"), format!("{v} is not a valid id"));
        }
    }
    if is_root(run_as) {
        if !ck.options.allow_functions_to_run_as_root {
            ck.err(
                path,
                "runs as root, but this core does not allow functions to run as root (enable allowFunctionsToRunAsRoot)",
            );
        }
        if isolation == IsolationMode::GreengrassContainer {
            ck.err(path, "running as root requires IsolationMode NoContainer");
        }
    }
}

fn check_spooler(ck: &mut Checker<'_>, cfg: &str, vars: Option<&BTreeMap<String, String>>) {
    let Some(vars) = vars else { return };
    let path = |k: &str| format!("{cfg}.Environment.Variables.{k}");
    if let Some(v) = vars.get("GG_CONFIG_STORAGE_TYPE")
        && !matches!(v.as_str(), "Memory" | "FileSystem")
    {
        ck.err(
            path("GG_CONFIG_STORAGE_TYPE"),
            format!("{v:?} is not Memory or FileSystem"),
        );
    }
    if let Some(v) = vars.get("GG_CONFIG_MAX_SIZE_BYTES") {
        match v.parse::<i64>() {
            Ok(n) if n >= limits::MIN_SPOOL_BYTES => {}
            _ => ck.err(
                path("GG_CONFIG_MAX_SIZE_BYTES"),
                format!(
                    "Spool size should be at least {} bytes (got {v:?})",
                    limits::MIN_SPOOL_BYTES
                ),
            ),
        }
    }
    if let Some(v) = vars.get("GG_CONFIG_SUBSCRIPTION_QUALITY")
        && !matches!(v.as_str(), "AtMostOnce" | "AtLeastOncePersistent")
    {
        ck.err(
            path("GG_CONFIG_SUBSCRIPTION_QUALITY"),
            format!("{v:?} is not AtMostOnce or AtLeastOncePersistent"),
        );
    }
}

fn check_resource_access(
    ck: &mut Checker<'_>,
    cfg: &str,
    arn: &LambdaArn,
    isolation: IsolationMode,
    env: &api::FunctionConfigurationEnvironment,
    resources: &BTreeMap<String, ResourceInfo<'_>>,
) {
    let policies = items(&env.resource_access_policies);
    let base = format!("{cfg}.Environment.ResourceAccessPolicies");
    if policies.len() > limits::RESOURCES_PER_FUNCTION {
        ck.err(
            &base,
            format!(
                "{} resources; a function may use at most {}",
                policies.len(),
                limits::RESOURCES_PER_FUNCTION
            ),
        );
    }
    let mut seen: HashSet<&str> = HashSet::new();
    for (j, p) in policies.iter().enumerate() {
        let at = Item(&base, j);
        if !seen.insert(&p.resource_id) {
            ck.err(
                format!("{at}.ResourceId"),
                format!("{:?} is listed twice for this function", p.resource_id),
            );
        }
        let Some(info) = resources.get(&p.resource_id) else {
            if ck.scope == Scope::Group {
                ck.err(
                    format!("{at}.ResourceId"),
                    format!("{:?} is not a resource of this group", p.resource_id),
                );
            }
            continue;
        };
        match info.kind {
            ResourceKind::Secret if p.permission == Some(Permission::Rw) => {
                ck.err(format!("{at}.Permission"), "secrets can only be granted ro");
            }
            ResourceKind::LocalDevice | ResourceKind::LocalVolume
                if isolation == IsolationMode::NoContainer =>
            {
                ck.err(
                    format!("{at}.ResourceId"),
                    format!(
                        "Function {arn} refers to resource {:?} of type '{}' that is not allowed in IsolationMode='NoContainer'",
                        p.resource_id,
                        if info.kind == ResourceKind::LocalDevice { "Local.Device" } else { "Local.Volume" }
                    ),
                );
            }
            ResourceKind::MachineLearning
                if isolation == IsolationMode::NoContainer && p.permission.is_some() =>
            {
                ck.err(
                    format!("{at}.Permission"),
                    "a function without a container reaches ML resources through the resource's OwnerSetting; remove Permission",
                );
            }
            ResourceKind::MachineLearning => {
                // core-semantics §1.7 and §4.2: the access comes from the policy's Permission
                // or the resource's OwnerSetting, and a Permission may not exceed the owner's.
                let owner = ml_owner(&info.resource.resource_data_container);
                match (p.permission, owner) {
                    (None, None) if isolation == IsolationMode::NoContainer => ck.err(
                        format!("{at}.ResourceId"),
                        format!(
                            "a function without a container reaches ML resource {:?} through its OwnerSetting, and it has none",
                            p.resource_id
                        ),
                    ),
                    (None, None) => ck.err(
                        format!("{at}.Permission"),
                        format!(
                            "is required: ML resource {:?} has no OwnerSetting to grant access",
                            p.resource_id
                        ),
                    ),
                    (Some(Permission::Rw), Some(o)) if o.group_permission == Permission::Ro => {
                        ck.err(
                            format!("{at}.Permission"),
                            format!(
                                "rw may not exceed the GroupPermission ro of ML resource {:?}'s OwnerSetting",
                                p.resource_id
                            ),
                        );
                    }
                    _ => {}
                }
            }
            ResourceKind::LocalVolume => {
                let src = info
                    .resource
                    .resource_data_container
                    .local_volume_resource_data
                    .as_ref()
                    .and_then(|v| v.source_path.as_deref())
                    .unwrap_or_default();
                if is_under(src, "/proc") && p.permission == Some(Permission::Rw) {
                    ck.err(
                        format!("{at}.Permission"),
                        "a /proc volume can only be granted ro",
                    );
                }
                if src.trim_end_matches('/') == "/dev/shm" && p.permission != Some(Permission::Rw) {
                    ck.err(
                        format!("{at}.Permission"),
                        "a /dev/shm volume must be granted rw",
                    );
                }
            }
            _ => {}
        }
    }
}

type CheckedConnector<'c> = (ConnectorSpec, &'c ConnectorVersion);

fn check_connectors<'c>(
    ck: &mut Checker<'c>,
    bundle: &GroupBundle,
    resources: &BTreeMap<String, ResourceInfo<'_>>,
    group_default: IsolationMode,
) -> Vec<CheckedConnector<'c>> {
    const BASE: &str = "ConnectorDefinitionVersion.Connectors";
    let connectors = bundle
        .connector_definition_version
        .as_ref()
        .map(|c| items(&c.connectors))
        .unwrap_or_default();
    ck.ids(BASE, connectors.iter().map(|c| c.id.as_str()));
    let mut by_name: HashMap<String, usize> = HashMap::default();
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    for (i, c) in connectors.iter().enumerate() {
        let at = Item(BASE, i);
        let arn = match ConnectorArn::parse(&c.connector_arn) {
            Ok(a) => a,
            Err(e) => {
                ck.err(format!("{at}.ConnectorArn"), e.to_string());
                continue;
            }
        };
        let catalog = ck.catalog;
        let Some(spec) = catalog.get(arn.connector_name(), arn.version()) else {
            let known = catalog.versions_of(arn.connector_name());
            let msg = if known.is_empty() {
                format!(
                    "{:?} is not a Greengrass connector (see `coupler connectors list`)",
                    arn.connector_name()
                )
            } else {
                format!(
                    "{} has no version {}; known versions: {}",
                    arn.connector_name(),
                    arn.version(),
                    known
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            ck.err(format!("{at}.ConnectorArn"), msg);
            continue;
        };
        // Aliases name the same connector, so key on the canonical name.
        if let Some(first) = by_name.insert(spec.name.clone(), i) {
            ck.err(
                format!("{at}.ConnectorArn"),
                format!(
                    "{BASE}[{first}] is already an instance of {}; a group holds one instance of each connector, in one version",
                    spec.name
                ),
            );
        }
        let given = c.parameters.as_ref().unwrap_or(&empty);
        let pbase = Parameters(at);
        for name in given.keys() {
            if spec.parameter(name).is_none() {
                ck.err(
                    format!("{pbase}.{name}"),
                    format!(
                        "is not a parameter of {} version {}",
                        spec.name, spec.version
                    ),
                );
            }
        }
        let mut params = BTreeMap::new();
        for p in &spec.parameters {
            let name = &p.spec.name;
            match given.get(name) {
                None if p.spec.required => ck.err(format!("{pbase}.{name}"), "is required"),
                None => {
                    if let Some(d) = &p.spec.default {
                        params.insert(name.clone(), d.clone());
                    }
                }
                Some(v) => {
                    if let Err(msg) = check_value(p, v) {
                        ck.err(format!("{pbase}.{name}"), msg);
                    }
                    params.insert(name.clone(), v.clone());
                    if let Some(r) = &p.spec.resource {
                        check_connector_resource(ck, pbase, name, v, r, given, resources);
                    }
                }
            }
        }
        let isolation = match params.get("IsolationMode").map(String::as_str) {
            Some("NoContainer") => IsolationMode::NoContainer,
            Some("GreengrassContainer") => IsolationMode::GreengrassContainer,
            _ => spec.default_isolation(),
        };
        if !spec.info.isolation.contains(&isolation) {
            ck.err(
                format!("{pbase}.IsolationMode"),
                format!(
                    "{} version {} cannot run in {}",
                    spec.name,
                    spec.version,
                    isolation.as_str()
                ),
            );
        }
        if group_default == IsolationMode::NoContainer && isolation != IsolationMode::NoContainer {
            ck.err(
                format!("{at}.ConnectorArn"),
                if spec.info.isolation.contains(&IsolationMode::NoContainer) {
                    "the group's default isolation is NoContainer, so this connector must run without a container too: set its IsolationMode parameter to NoContainer".to_owned()
                } else {
                    format!(
                        "the group's default isolation is NoContainer, and {} version {} can only run in a Greengrass container",
                        spec.name, spec.version
                    )
                },
            );
        }
        out.push((
            ConnectorSpec {
                id: c.id.clone(),
                arn,
                parameters: params,
                isolation,
            },
            spec,
        ));
    }
    out
}

fn check_connector_resource(
    ck: &mut Checker<'_>,
    pbase: Parameters<'_>,
    name: &str,
    value: &str,
    r: &crate::catalog::ResourceRef,
    given: &BTreeMap<String, String>,
    resources: &BTreeMap<String, ResourceInfo<'_>>,
) {
    let Some(info) = resources.get(value) else {
        if ck.scope == Scope::Group {
            ck.err(
                format!("{pbase}.{name}"),
                format!("{value:?} is not a resource of this group"),
            );
        }
        return;
    };
    if info.kind != r.kind {
        ck.err(
            format!("{pbase}.{name}"),
            format!("resource {value:?} must be {}", r.kind.describe()),
        );
        return;
    }
    let c = &info.resource.resource_data_container;
    let mut tie = |param: &Option<String>, field: &str, actual: Option<&str>| {
        if let Some(param) = param
            && let Some(v) = given.get(param)
            && Some(v.as_str()) != actual
        {
            ck.err(
                format!("{pbase}.{param}"),
                format!(
                    "{v:?} differs from the {field} of resource {value:?} ({:?})",
                    actual.unwrap_or_default()
                ),
            );
        }
    };
    let (src, dst) = match (&c.local_device_resource_data, &c.local_volume_resource_data) {
        (Some(d), _) => (d.source_path.as_deref(), None),
        (_, Some(v)) => (v.source_path.as_deref(), v.destination_path.as_deref()),
        _ => (None, None),
    };
    tie(&r.source_path_parameter, "SourcePath", src);
    tie(&r.destination_path_parameter, "DestinationPath", dst);
    let secret = c
        .secrets_manager_secret_resource_data
        .as_ref()
        .and_then(|s| s.arn.as_deref());
    tie(&r.arn_parameter, "ARN", secret);
}

fn check_subscriptions(
    ck: &mut Checker<'_>,
    bundle: &GroupBundle,
    devices: &[DeviceSpec],
    functions: &[FunctionSpec],
    connectors: &[CheckedConnector<'_>],
) -> Vec<Route> {
    const BASE: &str = "SubscriptionDefinitionVersion.Subscriptions";
    let subs = bundle
        .subscription_definition_version
        .as_ref()
        .map(|s| items(&s.subscriptions))
        .unwrap_or_default();
    ck.quota(
        BASE,
        "subscriptions",
        subs.len(),
        limits::SUBSCRIPTIONS_PER_GROUP,
    );
    ck.ids(BASE, subs.iter().map(|s| s.id.as_str()));
    // Every entity of the group, by the exact text a subscription names it with. Judging one
    // definition on its own, an end judged by its form is added too: lists name the same
    // ends over and over, and each text is parsed once.
    let mut entities: HashMap<&str, (Entity, Option<&ConnectorVersion>)> =
        HashMap::with_capacity_and_hasher(
            2 + devices.len() + functions.len() + connectors.len(),
            Default::default(),
        );
    entities.insert("cloud", (Entity::Cloud, None));
    entities.insert("GGShadowService", (Entity::ShadowService, None));
    for d in devices {
        entities.insert(
            d.thing.as_str(),
            (Entity::device(d.thing.thing_name()), None),
        );
    }
    for f in functions {
        entities.insert(f.arn.as_str(), (Entity::function(f.arn.as_str()), None));
    }
    for (c, spec) in connectors {
        entities.insert(
            c.arn.as_str(),
            (Entity::connector(c.arn.as_str()), Some(*spec)),
        );
    }
    let mut out = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let at = Item(BASE, i);
        let scope = ck.scope;
        let catalog = ck.catalog;
        let mut end = |field: &str, text| match entities.get(text) {
            Some(e) => Some(e.clone()),
            None if scope == Scope::Definition => match entity_of_form(catalog, text) {
                Ok(e) => {
                    entities.insert(text, e.clone());
                    Some(e)
                }
                Err(msg) => {
                    ck.err(format!("{at}.{field}"), msg);
                    None
                }
            },
            None => {
                ck.err(format!("{at}.{field}"), describe_unknown_entity(text));
                None
            }
        };
        let source = end("Source", &s.source);
        let target = end("Target", &s.target);
        let subject = TopicFilter::parse(&s.subject)
            .map_err(|e| ck.err(format!("{at}.Subject"), format!("{:?}: {e}", s.subject)))
            .ok();
        let (Some((source, source_spec)), Some((target, target_spec)), Some(subject)) =
            (source, target, subject)
        else {
            continue;
        };
        if let Some(spec) = target_spec
            && !spec.inputs.iter().any(|t| subject.is_subset_of(t))
        {
            ck.err(
                format!("{at}.Subject"),
                format!(
                    "{:?} is not a topic {} accepts; its input topics are: {}",
                    s.subject,
                    spec.name,
                    list_topics(&spec.inputs)
                ),
            );
        }
        if let Some(spec) = source_spec
            && !spec.outputs.iter().any(|t| subject.intersects(t))
        {
            ck.err(
                format!("{at}.Subject"),
                format!(
                    "{:?} matches nothing {} publishes; its output topics are: {}",
                    s.subject,
                    spec.name,
                    list_topics(&spec.outputs)
                ),
            );
        }
        out.push(Route {
            id: s.id.clone(),
            source,
            subject,
            target,
        });
    }
    out
}

fn list_topics(topics: &[TopicFilter]) -> String {
    if topics.is_empty() {
        return "(none)".into();
    }
    topics
        .iter()
        .map(TopicFilter::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Source or Target judged by its form alone, as a subscription definition version is.
fn entity_of_form<'c>(
    catalog: &'c Catalog,
    text: &str,
) -> Result<(Entity, Option<&'c ConnectorVersion>), String> {
    // Dispatch on the service, so that each text is parsed once.
    if text.starts_with("arn:aws:iot:") {
        return ThingArn::parse(text)
            .map(|t| (Entity::device(t.thing_name()), None))
            .map_err(|e| e.to_string());
    }
    if text.starts_with("arn:aws:lambda:") {
        return LambdaArn::parse(text)
            .map(|_| (Entity::function(text), None))
            .map_err(|e| e.to_string());
    }
    if let Ok(c) = ConnectorArn::parse(text) {
        return match catalog.get(c.connector_name(), c.version()) {
            Some(spec) => Ok((Entity::connector(text), Some(spec))),
            None => Err(format!(
                "{text:?}: {} version {} is not a Greengrass connector",
                c.connector_name(),
                c.version()
            )),
        };
    }
    Err(format!(
        "{text:?}: must be cloud, GGShadowService, or the ARN of a device, function or connector"
    ))
}

fn describe_unknown_entity(text: &str) -> String {
    let what = if let Ok(t) = ThingArn::parse(text) {
        format!("thing {:?} is not a device of this group", t.thing_name())
    } else if LambdaArn::parse(text).is_ok() {
        "is not a function of this group (a subscription must use the function ARN exactly as the function definition does, alias or version)".to_owned()
    } else if ConnectorArn::parse(text).is_ok() {
        "is not a connector of this group (a subscription must use the connector's exact versioned ARN)".to_owned()
    } else {
        "must be cloud, GGShadowService, or the ARN of a device, function or connector of this group".to_owned()
    };
    format!("{text:?}: {what}")
}

fn check_loggers(ck: &mut Checker<'_>, bundle: &GroupBundle) {
    const BASE: &str = "LoggerDefinitionVersion.Loggers";
    let loggers = bundle
        .logger_definition_version
        .as_ref()
        .map(|l| items(&l.loggers))
        .unwrap_or_default();
    ck.ids(BASE, loggers.iter().map(|l| l.id.as_str()));
    let mut seen: HashMap<(LoggerType, LoggerComponent), usize> = HashMap::default();
    for (i, l) in loggers.iter().enumerate() {
        let at = Item(BASE, i);
        if let Some(first) = seen.insert((l.kind, l.component), i) {
            ck.err(
                format!("{at}.Component"),
                format!("{BASE}[{first}] already configures this Type and Component"),
            );
        }
        match (l.kind, l.space) {
            (LoggerType::AwsCloudWatch, Some(_)) => {
                ck.err(format!("{at}.Space"), "applies to FileSystem loggers only")
            }
            (LoggerType::FileSystem, Some(s)) if s < 1 => ck.err(
                format!("{at}.Space"),
                format!("{s} KB is not a positive size"),
            ),
            _ => {}
        }
    }
}
