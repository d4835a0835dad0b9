//! `coupler_model::api` checked against the real AWS service model of Greengrass 2017-06-07:
//! the `service-2.json` that botocore (and so the AWS CLI) ships.
//!
//! Every structure and enum shape reachable from the eight definition-version payloads is
//! mapped, by hand, to the Rust type that mirrors it ([`TYPES`]). The tests then check, shape
//! by shape and member by member:
//!
//! - the serde field names of each Rust struct are exactly the botocore member names, and the
//!   variants of each Rust enum exactly the botocore enum values (read from the types
//!   themselves with a recording [`serde::Deserializer`]);
//! - a document generated from the model with every member present (and every enum value in
//!   turn) is accepted by the Rust root type and serialises back to the same JSON;
//! - removing a member that botocore marks `required` makes the document invalid, and
//!   removing any other member does not;
//! - an unknown member in any structure is rejected with a path that names that structure
//!   (the structure's path followed by the unknown member, e.g. `Loggers[0].Extra`).
//!
//! The model is read from `BOTOCORE_SERVICE_MODEL` (a path to `service-2.json` or
//! `service-2.json.gz`) when it is set, and otherwise found through `python3`'s `botocore`.
//! Without either the tests fail rather than skip: `pip install awscli`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use coupler_model::api;
use coupler_model::bundle::{MAX_BUNDLE_BYTES, ParseError, parse_document};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ------------------------------------------------------------------------------------------
// What is checked: the roots and the shape → Rust type mapping.
// ------------------------------------------------------------------------------------------

/// Reads a document as a root type and serialises it back.
type ParseFn = fn(&[u8]) -> Result<Value, ParseError>;

/// Reads the serde names out of a Rust type.
type IntrospectFn = fn() -> Introspected;

/// `[f; "Shape" => Type, ...]`: pairs each botocore shape name with `f::<api::Type>`.
macro_rules! mapping {
    ($f:ident; $($shape:literal => $ty:ident),* $(,)?) => {
        &[$(($shape, $f::<api::$ty>)),*]
    };
}

/// The definition-version payloads, with the Rust type that reads each one.
#[rustfmt::skip]
const ROOTS: &[(&str, ParseFn)] = mapping![parse_as;
    "GroupVersion" => GroupVersion,
    "CoreDefinitionVersion" => CoreDefinitionVersion,
    "DeviceDefinitionVersion" => DeviceDefinitionVersion,
    "FunctionDefinitionVersion" => FunctionDefinitionVersion,
    "ResourceDefinitionVersion" => ResourceDefinitionVersion,
    "ConnectorDefinitionVersion" => ConnectorDefinitionVersion,
    "SubscriptionDefinitionVersion" => SubscriptionDefinitionVersion,
    "LoggerDefinitionVersion" => LoggerDefinitionVersion,
];

/// Every structure and enum shape reachable from [`ROOTS`] (botocore name first), with the
/// Rust type that mirrors it. A shape missing here, or a name here that botocore no longer
/// reaches, fails `field_names_match_botocore`.
#[rustfmt::skip]
const TYPES: &[(&str, IntrospectFn)] = mapping![introspect;
    // Structures.
    "GroupVersion" => GroupVersion,
    "CoreDefinitionVersion" => CoreDefinitionVersion,
    "Core" => Core,
    "DeviceDefinitionVersion" => DeviceDefinitionVersion,
    "Device" => Device,
    "FunctionDefinitionVersion" => FunctionDefinitionVersion,
    "FunctionDefaultConfig" => FunctionDefaultConfig,
    "FunctionDefaultExecutionConfig" => FunctionDefaultExecutionConfig,
    "FunctionRunAsConfig" => FunctionRunAsConfig,
    "Function" => Function,
    "FunctionConfiguration" => FunctionConfiguration,
    "FunctionConfigurationEnvironment" => FunctionConfigurationEnvironment,
    "FunctionExecutionConfig" => FunctionExecutionConfig,
    "ResourceAccessPolicy" => ResourceAccessPolicy,
    "ResourceDefinitionVersion" => ResourceDefinitionVersion,
    "Resource" => Resource,
    "ResourceDataContainer" => ResourceDataContainer,
    "LocalDeviceResourceData" => LocalDeviceResourceData,
    "LocalVolumeResourceData" => LocalVolumeResourceData,
    "GroupOwnerSetting" => GroupOwnerSetting,
    "S3MachineLearningModelResourceData" => S3MachineLearningModelResourceData,
    "SageMakerMachineLearningModelResourceData" => SageMakerMachineLearningModelResourceData,
    "ResourceDownloadOwnerSetting" => ResourceDownloadOwnerSetting,
    "SecretsManagerSecretResourceData" => SecretsManagerSecretResourceData,
    "ConnectorDefinitionVersion" => ConnectorDefinitionVersion,
    "Connector" => Connector,
    "SubscriptionDefinitionVersion" => SubscriptionDefinitionVersion,
    "Subscription" => Subscription,
    "LoggerDefinitionVersion" => LoggerDefinitionVersion,
    "Logger" => Logger,
    // Enums.
    "FunctionIsolationMode" => IsolationMode,
    "EncodingType" => EncodingType,
    "Permission" => Permission,
    "LoggerComponent" => LoggerComponent,
    "LoggerLevel" => LoggerLevel,
    "LoggerType" => LoggerType,
];

/// A member name that no Greengrass shape has.
const UNKNOWN_MEMBER: &str = "CouplerUnknownMember";

fn parse_as<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<Value, ParseError> {
    let typed: T = parse_document(bytes, MAX_BUNDLE_BYTES)?;
    Ok(serde_json::to_value(&typed).expect("an API type serialises to JSON"))
}

fn root_names() -> Vec<&'static str> {
    ROOTS.iter().map(|(name, _)| *name).collect()
}

// ------------------------------------------------------------------------------------------
// The botocore service model.
// ------------------------------------------------------------------------------------------

const INSTALL_HINT: &str = "install botocore with `pip install awscli` (so that `python3 -c \
     'import botocore'` works), or set BOTOCORE_SERVICE_MODEL to the path of \
     botocore/data/greengrass/2017-06-07/service-2.json(.gz)";

/// Where botocore keeps the model, relative to its package directory (`.gz` in recent
/// releases, plain JSON in older ones).
const MODEL_IN_BOTOCORE: &str = "data/greengrass/2017-06-07/service-2.json";

/// The parts of `service-2.json` these tests read.
#[derive(Debug, Deserialize)]
struct ServiceModel {
    metadata: Metadata,
    shapes: BTreeMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(rename = "apiVersion")]
    api_version: String,
    #[serde(rename = "serviceId")]
    service_id: String,
}

#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: BTreeMap<String, ShapeRef>,
    #[serde(default)]
    required: BTreeSet<String>,
    member: Option<ShapeRef>,
    key: Option<ShapeRef>,
    value: Option<ShapeRef>,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ShapeRef {
    shape: String,
}

impl Shape {
    fn is_structure(&self) -> bool {
        self.kind == "structure"
    }

    fn is_enum(&self) -> bool {
        self.kind == "string" && self.enum_values.is_some()
    }

    fn describe(&self) -> &'static str {
        if self.is_structure() {
            "structure"
        } else if self.is_enum() {
            "enum"
        } else {
            "scalar, list or map"
        }
    }

    fn target<'s>(&self, part: &'s Option<ShapeRef>, owner: &str, what: &str) -> &'s str {
        match part {
            Some(target) => &target.shape,
            None => panic!("botocore {} shape `{owner}` has no `{what}`", self.kind),
        }
    }
}

impl ServiceModel {
    fn shape(&self, name: &str) -> &Shape {
        self.shapes
            .get(name)
            .unwrap_or_else(|| panic!("the botocore model has no shape `{name}`"))
    }

    /// The shapes that `name` refers to directly.
    fn children(&self, name: &str) -> Vec<&str> {
        let shape = self.shape(name);
        match shape.kind.as_str() {
            "structure" => shape.members.values().map(|r| r.shape.as_str()).collect(),
            "list" => vec![shape.target(&shape.member, name, "member")],
            "map" => vec![
                shape.target(&shape.key, name, "key"),
                shape.target(&shape.value, name, "value"),
            ],
            _ => Vec::new(),
        }
    }

    /// Every shape reachable from `roots`, each once, depth first.
    fn reachable(&self, roots: &[&str]) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let mut stack: Vec<&str> = roots.iter().rev().copied().collect();
        while let Some(name) = stack.pop() {
            if seen.iter().any(|s| s == name) {
                continue;
            }
            seen.push(name.to_owned());
            stack.extend(self.children(name).into_iter().rev());
        }
        seen
    }

    /// As many documents as the longest enum reachable from `root` has values, so that each
    /// value of each enum appears in at least one of them.
    fn documents_for(&self, root: &str) -> usize {
        self.reachable(&[root])
            .iter()
            .filter_map(|name| self.shape(name).enum_values.as_ref().map(Vec::len))
            .max()
            .unwrap_or(1)
    }
}

fn model() -> &'static ServiceModel {
    static MODEL: OnceLock<ServiceModel> = OnceLock::new();
    MODEL.get_or_init(load_model)
}

fn locate_model() -> PathBuf {
    if let Some(path) = std::env::var_os("BOTOCORE_SERVICE_MODEL") {
        return PathBuf::from(path);
    }
    let output = Command::new("python3")
        .args([
            "-c",
            "import botocore, os; print(os.path.dirname(botocore.__file__))",
        ])
        .output();
    let dir = match output {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        Ok(out) => panic!(
            "python3 cannot import botocore ({}; {}): {INSTALL_HINT}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run python3 to find botocore ({e}): {INSTALL_HINT}"),
    };
    let plain = dir.join(MODEL_IN_BOTOCORE);
    let gz = plain.with_extension("json.gz");
    if gz.is_file() {
        gz
    } else if plain.is_file() {
        plain
    } else {
        panic!(
            "botocore at {} has no Greengrass 2017-06-07 model ({} or .gz): {INSTALL_HINT}",
            dir.display(),
            plain.display()
        )
    }
}

fn load_model() -> ServiceModel {
    let path = locate_model();
    let raw = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {INSTALL_HINT}", path.display()));
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut json)
            .unwrap_or_else(|e| panic!("cannot gunzip {}: {e}", path.display()));
        json
    } else {
        raw
    };
    let model: ServiceModel = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{} is not a botocore service model: {e}", path.display()));
    assert_eq!(
        (
            model.metadata.service_id.as_str(),
            model.metadata.api_version.as_str()
        ),
        ("Greengrass", "2017-06-07"),
        "{} is not the Greengrass 2017-06-07 service model",
        path.display()
    );
    model
}

// ------------------------------------------------------------------------------------------
// Reading serde names out of the Rust types.
// ------------------------------------------------------------------------------------------

/// What a type's `Deserialize` impl asked for.
#[derive(Debug, Clone, Copy)]
enum Introspected {
    Struct {
        name: &'static str,
        fields: &'static [&'static str],
    },
    Enum {
        name: &'static str,
        variants: &'static [&'static str],
    },
    /// Neither `deserialize_struct` nor `deserialize_enum`; holds the Rust type name.
    Neither(&'static str),
}

impl fmt::Display for Introspected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Struct { name, .. } => write!(f, "the Rust struct {name}"),
            Self::Enum { name, .. } => write!(f, "the Rust enum {name}"),
            Self::Neither(rust) => write!(f, "{rust}, which is neither a struct nor an enum"),
        }
    }
}

/// A deserializer that records the field (or variant) names it is asked for, then fails.
struct Recorder<'r>(&'r mut Option<Introspected>);

fn stop() -> de::value::Error {
    de::Error::custom("names recorded")
}

impl<'de> serde::Deserializer<'de> for Recorder<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(stop())
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(Introspected::Struct { name, fields });
        Err(stop())
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(Introspected::Enum { name, variants });
        Err(stop())
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

fn introspect<T: DeserializeOwned>() -> Introspected {
    let mut recorded = None;
    let outcome = T::deserialize(Recorder(&mut recorded));
    assert!(
        outcome.is_err(),
        "{} deserialised from nothing",
        std::any::type_name::<T>()
    );
    recorded.unwrap_or(Introspected::Neither(std::any::type_name::<T>()))
}

// ------------------------------------------------------------------------------------------
// Documents generated from the model.
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    /// A structure member or a map key.
    Key(String),
    /// A list element.
    Index(usize),
}

/// A place in a document, displayed the way `parse_document` reports paths.
#[derive(Debug, Clone, Default, PartialEq)]
struct DocPath(Vec<Segment>);

impl DocPath {
    fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A structure in a generated document.
#[derive(Debug)]
struct Site {
    shape: String,
    path: DocPath,
}

/// A document with every member of every structure present.
#[derive(Debug)]
struct Generated {
    root: &'static str,
    /// Which value of each enum was chosen: value `variant % len`.
    variant: usize,
    doc: Value,
    structures: Vec<Site>,
}

impl Generated {
    fn new(model: &ServiceModel, root: &'static str, variant: usize) -> Self {
        let mut structures = Vec::new();
        let doc = sample(model, root, variant, &DocPath::default(), &mut structures);
        Self {
            root,
            variant,
            doc,
            structures,
        }
    }

    /// The structure shape that holds the member at `path`, for messages.
    fn owner_of(&self, path: &DocPath) -> String {
        (0..path.0.len())
            .rev()
            .find_map(|len| {
                let parent = DocPath(path.0[..len].to_vec());
                let site = self.structures.iter().find(|s| s.path == parent)?;
                match &path.0[len] {
                    Segment::Key(member) => Some(format!("{}.{member}", site.shape)),
                    Segment::Index(_) => None,
                }
            })
            .unwrap_or_else(|| self.root.to_owned())
    }

    fn label(&self) -> String {
        format!("{} (document {})", self.root, self.variant)
    }
}

fn sample(
    model: &ServiceModel,
    name: &str,
    variant: usize,
    path: &DocPath,
    structures: &mut Vec<Site>,
) -> Value {
    assert!(
        path.0.len() < 64,
        "shape `{name}` at {path} nests too deeply (a recursive shape?)"
    );
    let shape = model.shape(name);
    match shape.kind.as_str() {
        "structure" => {
            structures.push(Site {
                shape: name.to_owned(),
                path: path.clone(),
            });
            let members = shape
                .members
                .iter()
                .map(|(member, target)| {
                    let value =
                        sample(model, &target.shape, variant, &path.key(member), structures);
                    (member.clone(), value)
                })
                .collect();
            Value::Object(members)
        }
        "list" => {
            let element = shape.target(&shape.member, name, "member");
            Value::Array(vec![sample(
                model,
                element,
                variant,
                &path.index(0),
                structures,
            )])
        }
        "map" => {
            let key = sample(
                model,
                shape.target(&shape.key, name, "key"),
                variant,
                path,
                structures,
            );
            let Value::String(key) = key else {
                panic!("botocore map shape `{name}` has keys that are not strings")
            };
            let value = sample(
                model,
                shape.target(&shape.value, name, "value"),
                variant,
                &path.key(&key),
                structures,
            );
            Value::Object(Map::from_iter([(key, value)]))
        }
        "string" => match &shape.enum_values {
            Some(values) => Value::String(values[variant % values.len()].clone()),
            None => Value::String(format!("sample {path}")),
        },
        "integer" | "long" => Value::from(1000 + variant),
        "boolean" => Value::Bool(true),
        other => panic!(
            "botocore shape `{name}` (at {path}) has type `{other}`, which this test does not \
             generate yet"
        ),
    }
}

/// The structure at `path` in `doc`.
fn object_at<'v>(doc: &'v mut Value, path: &DocPath) -> &'v mut Map<String, Value> {
    let mut here = doc;
    for segment in &path.0 {
        here = match segment {
            Segment::Key(key) => here.get_mut(key.as_str()),
            Segment::Index(index) => here.get_mut(*index),
        }
        .unwrap_or_else(|| panic!("generated document has nothing at {path}"));
    }
    here.as_object_mut()
        .unwrap_or_else(|| panic!("generated document has no object at {path}"))
}

/// Every difference between `expected` and `actual`, by path.
fn diff(
    generated: &Generated,
    expected: &Value,
    actual: &Value,
    path: &DocPath,
    out: &mut Vec<String>,
) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, want_value) in want {
                let at = path.key(key);
                match got.get(key) {
                    Some(got_value) => diff(generated, want_value, got_value, &at, out),
                    None => out.push(format!(
                        "{}: {} is lost in the round trip (at {at}; was {want_value})",
                        generated.label(),
                        generated.owner_of(&at),
                    )),
                }
            }
            for (key, got_value) in got {
                if !want.contains_key(key) {
                    let at = path.key(key);
                    out.push(format!(
                        "{}: {} was not in the input but is serialised as {got_value} (at {at})",
                        generated.label(),
                        generated.owner_of(&at),
                    ));
                }
            }
        }
        (Value::Array(want), Value::Array(got)) if want.len() == got.len() => {
            for (index, (w, g)) in want.iter().zip(got).enumerate() {
                diff(generated, w, g, &path.index(index), out);
            }
        }
        _ if expected == actual => {}
        _ => out.push(format!(
            "{}: {} changes in the round trip (at {path}): {expected} became {actual}",
            generated.label(),
            generated.owner_of(path),
        )),
    }
}

fn to_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_vec(doc).expect("a JSON value serialises")
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s) against the botocore Greengrass model:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ------------------------------------------------------------------------------------------
// The tests.
// ------------------------------------------------------------------------------------------

/// Serde field names equal botocore member names, and enum variants equal enum values, for
/// every structure and enum reachable from the roots.
#[test]
fn field_names_match_botocore() {
    let model = model();
    let reachable = model.reachable(&root_names());
    let mut problems = Vec::new();

    let mut mapped: BTreeMap<&str, IntrospectFn> = BTreeMap::new();
    for (shape, introspect) in TYPES {
        if mapped.insert(shape, *introspect).is_some() {
            problems.push(format!("TYPES maps `{shape}` twice"));
        }
    }
    for shape in mapped.keys() {
        if !reachable.iter().any(|r| r == shape) {
            problems.push(format!(
                "TYPES maps `{shape}`, but botocore does not reach that shape from the \
                 definition versions (renamed or removed?)"
            ));
        }
    }

    for name in &reachable {
        let shape = model.shape(name);
        if !shape.is_structure() && !shape.is_enum() {
            continue;
        }
        let Some(introspect) = mapped.get(name.as_str()) else {
            problems.push(format!(
                "botocore {} `{name}` has no Rust type in TYPES (a new shape?)",
                shape.describe()
            ));
            continue;
        };
        match introspect() {
            Introspected::Struct { name: rust, fields } if shape.is_structure() => {
                let want: BTreeSet<&str> = shape.members.keys().map(String::as_str).collect();
                let got: BTreeSet<&str> = fields.iter().copied().collect();
                if got.len() != fields.len() {
                    problems.push(format!("api::{rust} has duplicate serde field names"));
                }
                for member in want.difference(&got) {
                    problems.push(format!(
                        "{name}.{member}: botocore member has no serde field in api::{rust}"
                    ));
                }
                for field in got.difference(&want) {
                    problems.push(format!(
                        "{name}.{field}: serde field of api::{rust} is not a botocore member \
                         (botocore has {want:?})"
                    ));
                }
            }
            Introspected::Enum {
                name: rust,
                variants,
            } if shape.is_enum() => {
                let listed = shape.enum_values.as_deref().unwrap_or_default();
                let want: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
                let got: BTreeSet<&str> = variants.iter().copied().collect();
                for value in want.difference(&got) {
                    problems.push(format!(
                        "{name} = {value:?}: botocore enum value is not a variant of api::{rust}"
                    ));
                }
                for variant in got.difference(&want) {
                    problems.push(format!(
                        "{name} = {variant:?}: variant of api::{rust} is not a botocore enum \
                         value (botocore has {want:?})"
                    ));
                }
            }
            other => problems.push(format!(
                "botocore {} `{name}` is mapped to {other}",
                shape.describe()
            )),
        }
    }
    assert_no_problems("field and variant names", &problems);
}

/// A document with every member present, and every enum value in turn, survives a round trip
/// through the Rust root type unchanged.
#[test]
fn every_member_round_trips() {
    let model = model();
    let mut problems = Vec::new();
    for &(root, parse) in ROOTS {
        for variant in 0..model.documents_for(root) {
            let generated = Generated::new(model, root, variant);
            match parse(&to_bytes(&generated.doc)) {
                Ok(back) => diff(
                    &generated,
                    &generated.doc,
                    &back,
                    &DocPath::default(),
                    &mut problems,
                ),
                Err(e) => problems.push(format!(
                    "{}: api::{root} rejects a document with every botocore member: {e}",
                    generated.label()
                )),
            }
        }
    }
    assert_no_problems("round trip", &problems);
}

/// Removing a member that botocore marks `required` makes the document invalid (with the
/// path of its structure); removing any other member leaves it valid and round-tripping.
#[test]
fn required_members_are_required() {
    let model = model();
    let mut problems = Vec::new();
    let mut checked = 0;
    for &(root, parse) in ROOTS {
        let generated = Generated::new(model, root, 0);
        if let Err(e) = parse(&to_bytes(&generated.doc)) {
            // Every variation below would fail for this reason too.
            problems.push(format!(
                "{root}: not checked, as the full document is rejected ({e}); see \
                 every_member_round_trips"
            ));
            continue;
        }
        for site in &generated.structures {
            let shape = model.shape(&site.shape);
            for name in &shape.required {
                if !shape.members.contains_key(name) {
                    problems.push(format!(
                        "botocore lists `{name}` as required in `{}`, which has no such member",
                        site.shape
                    ));
                }
            }
            for member in shape.members.keys() {
                checked += 1;
                let mut doc = generated.doc.clone();
                object_at(&mut doc, &site.path).remove(member);
                let what = format!("{}.{member} (at {})", site.shape, site.path.key(member));
                let required = shape.required.contains(member);
                match (required, parse(&to_bytes(&doc))) {
                    (true, Ok(_)) => problems.push(format!(
                        "{what}: required in botocore, but api::{root} accepts a document \
                         without it"
                    )),
                    (true, Err(ParseError::Invalid { path, message })) => {
                        let missing = format!("missing field `{member}`");
                        if path != site.path.to_string() || !message.contains(&missing) {
                            problems.push(format!(
                                "{what}: required, and the document without it is rejected, \
                                 but not as {missing} at {}: {path}: {message}",
                                site.path
                            ));
                        }
                    }
                    (true, Err(e)) => problems.push(format!(
                        "{what}: required, and the document without it fails, but with {e:?}"
                    )),
                    (false, Ok(back)) => {
                        let mut changes = Vec::new();
                        diff(&generated, &doc, &back, &DocPath::default(), &mut changes);
                        problems.extend(
                            changes
                                .into_iter()
                                .map(|change| format!("without {what}: {change}")),
                        );
                    }
                    (false, Err(e)) => problems.push(format!(
                        "{what}: optional in botocore, but api::{root} rejects a document \
                         without it: {e}"
                    )),
                }
            }
        }
    }
    assert!(checked > 0, "no members checked");
    assert_no_problems("required members", &problems);
}

/// A member that botocore does not define is rejected in every structure, and the error's path
/// names that structure (its path, then the unknown member).
#[test]
fn unknown_members_are_rejected_with_path() {
    let model = model();
    let mut problems = Vec::new();
    for &(root, parse) in ROOTS {
        let generated = Generated::new(model, root, 0);
        if let Err(e) = parse(&to_bytes(&generated.doc)) {
            // Every variation below would fail for this reason too.
            problems.push(format!(
                "{root}: not checked, as the full document is rejected ({e}); see \
                 every_member_round_trips"
            ));
            continue;
        }
        for site in &generated.structures {
            let mut doc = generated.doc.clone();
            object_at(&mut doc, &site.path)
                .insert(UNKNOWN_MEMBER.to_owned(), Value::from("unexpected"));
            let what = format!("{} at {} in {root}", site.shape, site.path);
            match parse(&to_bytes(&doc)) {
                Err(ParseError::Invalid { path, message }) => {
                    // The path is the structure's, followed by the member it does not know.
                    let expected = site.path.key(UNKNOWN_MEMBER).to_string();
                    let unknown = format!("unknown field `{UNKNOWN_MEMBER}`");
                    if path != expected || !message.contains(&unknown) {
                        problems.push(format!(
                            "{what}: an unknown member is rejected, but not as {unknown} at \
                             {expected}: {path}: {message}"
                        ));
                    }
                }
                Ok(_) => problems.push(format!(
                    "{what}: api::{root} accepts an unknown member `{UNKNOWN_MEMBER}`"
                )),
                Err(e) => problems.push(format!(
                    "{what}: an unknown member fails, but with {e:?} instead of a path"
                )),
            }
        }
    }
    assert_no_problems("unknown members", &problems);
}
