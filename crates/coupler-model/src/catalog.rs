//! The catalog of AWS-provided Greengrass connectors, as data.
//!
//! `catalog/connectors.yaml` holds every connector with every version: parameters (name,
//! required, type, pattern, default), input and output topics and isolation modes. Parameters
//! and topics carry an optional `since`/`until` version range, so one entry serves all versions.
//! The file is parsed once, on first use, and checked by tests (patterns compile, topics parse).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, OnceLock};

use serde::{Deserialize, Serialize};

use crate::api::IsolationMode;
use crate::topic::TopicFilter;

const CATALOG_YAML: &str = include_str!("../catalog/connectors.yaml");

/// The whole catalog file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    pub connectors: Vec<ConnectorEntry>,
}

/// One connector, all versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorEntry {
    /// The ARN name, e.g. `TwilioNotifications`.
    pub name: String,
    /// Other ARN names the documentation used for the same connector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Human name, e.g. `Twilio Notifications`.
    pub title: String,
    /// One sentence on what it does.
    pub summary: String,
    pub versions: Vec<VersionEntry>,
    pub parameters: Vec<ParameterSpec>,
    #[serde(default)]
    pub inputs: Vec<TopicSpec>,
    #[serde(default)]
    pub outputs: Vec<TopicSpec>,
}

/// Facts about one version of a connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionEntry {
    pub version: u32,
    /// The runtime AWS shipped it on, e.g. `python3.7`, `python2.7`, `java8`.
    pub runtime: String,
    /// Oldest Greengrass core version it ran on, e.g. `1.9.3`.
    pub min_core: String,
    /// Isolation modes this version can run in; the first is its default.
    pub isolation: Vec<IsolationMode>,
    /// Whether the connector's function is long-lived (pinned).
    #[serde(default)]
    pub long_lived: bool,
    /// What changed in this version.
    pub changes: String,
}

/// How a parameter's string value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Boolean,
    /// One of `values`.
    Enum,
    /// A JSON document inside the string.
    Json,
}

/// What kind of group resource a `*-ResourceId` parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    LocalDevice,
    LocalVolume,
    Secret,
    MachineLearning,
}

impl ResourceKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::LocalDevice => "a local device resource",
            Self::LocalVolume => "a local volume resource",
            Self::Secret => "a secret resource",
            Self::MachineLearning => "a machine-learning resource",
        }
    }
}

/// A parameter that names a group resource, and the parameters tied to that resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    /// Access the connector gets: `ro` or `rw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<crate::api::Permission>,
    /// For secrets: the parameter holding the secret ARN, which must be the resource's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn_parameter: Option<String>,
    /// The parameter that must equal the resource's `SourcePath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path_parameter: Option<String>,
    /// The parameter that must equal the resource's `DestinationPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_path_parameter: Option<String>,
}

/// One connector parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    pub name: String,
    pub required: bool,
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// The documented pattern, matched from the start of the value (Python `re.match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Allowed values for `enum`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// First version that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u32>,
    /// Last version that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u32>,
    /// A documentation inconsistency worth knowing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Added by Coupler, not in the Greengrass connector: optional, and a group written for
    /// Greengrass never needs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extension: bool,
}

/// An input or output topic filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub topic: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u32>,
}

fn in_range(v: u32, since: Option<u32>, until: Option<u32>) -> bool {
    since.is_none_or(|s| v >= s) && until.is_none_or(|u| v <= u)
}

/// A parameter ready to check values against.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub spec: ParameterSpec,
    /// Its pattern, compiled on first use and shared by every version that has it: the
    /// catalog holds hundreds of patterns, and a compiled one costs tens of KB of heap
    /// (measured at 3 MB for the catalog), while a core checks only its own connectors'.
    pattern: Option<Arc<Pattern>>,
}

#[derive(Debug)]
struct Pattern {
    /// `^(?:PATTERN)`, known to compile.
    source: String,
    compiled: OnceLock<Matcher>,
}

/// A compiled pattern. The regex-lite engine gives `\d`, `\w` and `\s` (and their
/// negations) the meaning Java and the console's JavaScript give them, where AWS checked the
/// documented patterns: ASCII. (The regex crate's are Unicode classes, which would also
/// accept other scripts' digits and letters; its faster automata cost 0.5 MB of code and
/// hundreds of KB of heap per pattern, for short values checked when a group is written.)
type Matcher = regex_lite::Regex;

impl Pattern {
    fn is_match(&self, value: &str) -> bool {
        self.compiled
            .get_or_init(|| Matcher::new(&self.source).unwrap_or_else(|_| unreachable_pattern()))
            .is_match(value)
    }
}

/// A pattern that compiled when the catalog was loaded compiles again; should it not, no
/// value matches rather than the core stopping.
fn unreachable_pattern() -> Matcher {
    Matcher::new("[^\\s\\S]").unwrap_or_else(|_| unreachable!("a constant pattern"))
}

/// One version of one connector, resolved: only what applies to this version.
#[derive(Debug, Clone)]
pub struct ConnectorVersion {
    pub name: String,
    pub title: String,
    pub version: u32,
    pub info: VersionEntry,
    pub parameters: Vec<Parameter>,
    pub inputs: Vec<TopicFilter>,
    pub outputs: Vec<TopicFilter>,
}

impl ConnectorVersion {
    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.spec.name == name)
    }

    /// The isolation mode it runs in when `IsolationMode` is not given.
    pub fn default_isolation(&self) -> IsolationMode {
        self.info
            .isolation
            .first()
            .copied()
            .unwrap_or(IsolationMode::GreengrassContainer)
    }
}

/// Errors in the catalog data itself; tests make sure there are none.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("{connector}: parameter {param}: pattern {pattern:?} does not compile: {error}")]
    Pattern {
        connector: String,
        param: String,
        pattern: String,
        error: regex_lite::Error,
    },
    #[error("{connector}: topic {topic:?}: {error}")]
    Topic {
        connector: String,
        topic: String,
        error: crate::topic::TopicError,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// The parsed catalog: look up any connector version by ARN name.
#[derive(Debug)]
pub struct Catalog {
    pub file: CatalogFile,
    /// By ARN name (and alias), then version.
    versions: BTreeMap<String, BTreeMap<u32, ConnectorVersion>>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    // The file is compiled in and checked by tests, so failing here is a build defect.
    #[allow(clippy::expect_used)]
    // Its patterns are not compiled here: tests compile every one (`from_yaml`), and doing
    // it at each start cost a few ms and a heap peak of a few MB that stayed resident.
    Catalog::load(CATALOG_YAML, false).expect("the built-in connector catalog is valid")
});

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> &'static Catalog {
        &CATALOG
    }

    /// Parse a catalog and check it, every pattern included.
    pub fn from_yaml(text: &str) -> Result<Catalog, CatalogError> {
        Self::load(text, true)
    }

    fn load(text: &str, compile_patterns: bool) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = serde_norway::from_str(text)?;
        let mut versions = BTreeMap::new();
        for c in &file.connectors {
            let mut parameters = Vec::new();
            for p in &c.parameters {
                let pattern = match &p.pattern {
                    None => None,
                    Some(pat) => {
                        let source = format!("^(?:{pat})");
                        // Checked so that a bad catalog fails to load; kept only as text.
                        if compile_patterns {
                            Matcher::new(&source).map_err(|error| CatalogError::Pattern {
                                connector: c.name.clone(),
                                param: p.name.clone(),
                                pattern: pat.clone(),
                                error,
                            })?;
                        }
                        Some(Arc::new(Pattern {
                            source,
                            compiled: OnceLock::new(),
                        }))
                    }
                };
                parameters.push(Parameter {
                    spec: p.clone(),
                    pattern,
                });
            }
            let parse_topics =
                |list: &'_ [TopicSpec]| -> Result<Vec<(TopicSpec, TopicFilter)>, CatalogError> {
                    list.iter()
                        .map(|t| {
                            TopicFilter::parse(&t.topic)
                                .map(|f| (t.clone(), f))
                                .map_err(|error| CatalogError::Topic {
                                    connector: c.name.clone(),
                                    topic: t.topic.clone(),
                                    error,
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()
                };
            let inputs = parse_topics(&c.inputs)?;
            let outputs = parse_topics(&c.outputs)?;
            for v in &c.versions {
                if v.isolation.is_empty() {
                    return Err(CatalogError::Inconsistent(format!(
                        "{} v{}: no isolation mode",
                        c.name, v.version
                    )));
                }
                let n = v.version;
                let cv = ConnectorVersion {
                    name: c.name.clone(),
                    title: c.title.clone(),
                    version: n,
                    info: v.clone(),
                    parameters: parameters
                        .iter()
                        .filter(|p| in_range(n, p.spec.since, p.spec.until))
                        .cloned()
                        .collect(),
                    inputs: inputs
                        .iter()
                        .filter(|(t, _)| in_range(n, t.since, t.until))
                        .map(|(_, f)| f.clone())
                        .collect(),
                    outputs: outputs
                        .iter()
                        .filter(|(t, _)| in_range(n, t.since, t.until))
                        .map(|(_, f)| f.clone())
                        .collect(),
                };
                for name in std::iter::once(&c.name).chain(&c.aliases) {
                    if versions
                        .entry(name.clone())
                        .or_insert_with(BTreeMap::new)
                        .insert(n, cv.clone())
                        .is_some()
                    {
                        return Err(CatalogError::Inconsistent(format!(
                            "{name} v{n} is listed twice"
                        )));
                    }
                }
            }
        }
        Ok(Catalog { file, versions })
    }

    /// One version of a connector, by ARN name (or a documented alias) and version.
    pub fn get(&self, name: &str, version: u32) -> Option<&ConnectorVersion> {
        self.versions.get(name)?.get(&version)
    }

    /// A connector's entry by ARN name or alias.
    pub fn entry(&self, name: &str) -> Option<&ConnectorEntry> {
        self.file
            .connectors
            .iter()
            .find(|c| c.name == name || c.aliases.iter().any(|a| a == name))
    }

    /// The versions known for a connector name, ascending.
    pub fn versions_of(&self, name: &str) -> Vec<u32> {
        self.entry(name)
            .map(|e| e.versions.iter().map(|v| v.version).collect())
            .unwrap_or_default()
    }
}

/// Why a parameter value is not acceptable.
pub fn check_value(param: &Parameter, value: &str) -> Result<(), String> {
    let spec = &param.spec;
    if let Some(re) = &param.pattern
        && !re.is_match(value)
    {
        return Err(format!(
            "{value:?} does not match {}",
            spec.pattern.as_deref().unwrap_or_default()
        ));
    }
    match spec.kind {
        ParamType::String => {}
        ParamType::Integer => {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{value:?} is not an integer"))?;
            if let Some(min) = spec.min
                && n < min
            {
                return Err(format!("{n} is below the minimum {min}"));
            }
            if let Some(max) = spec.max
                && n > max
            {
                return Err(format!("{n} is above the maximum {max}"));
            }
        }
        ParamType::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(format!("{value:?} is not true or false"));
            }
        }
        ParamType::Enum => {
            if !spec.values.iter().any(|v| v == value) {
                return Err(format!(
                    "{value:?} is not one of {}",
                    spec.values.join(", ")
                ));
            }
        }
        ParamType::Json => {
            serde_json::from_str::<serde_json::Value>(value)
                .map_err(|e| format!("is not a JSON document: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Matcher;

    #[test]
    fn classes_are_ascii_as_in_java() {
        let digits = Matcher::new(r"^(?:\d+)").unwrap();
        assert!(digits.is_match("0123x"));
        assert!(!digits.is_match("x0123"));
        // Arabic-Indic digits are `\d` to the regex crate, not to Java or JavaScript.
        assert!(!digits.is_match("١٢٣"));
        let word = Matcher::new(r"^(?:[\w-]+)$").unwrap();
        assert!(word.is_match("Ab_9-"));
        assert!(!word.is_match("é"));
        let space = Matcher::new(r"^\s$").unwrap();
        assert!(space.is_match("\x0B"));
        assert!(!space.is_match("\u{a0}"));
        assert!(!super::unreachable_pattern().is_match(""));
    }
}
