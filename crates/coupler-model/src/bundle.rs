//! A *group bundle*: every definition version of one group in one JSON or YAML document.
//!
//! Each key holds exactly the API payload of that definition version, so a bundle can be
//! assembled from `aws greengrass get-*-definition-version` output and turned back into API
//! calls. See `docs/group-bundle.md`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::arn::DefinitionKind;

use crate::api::{
    ConnectorDefinitionVersion, CoreDefinitionVersion, DeviceDefinitionVersion,
    FunctionDefinitionVersion, LoggerDefinitionVersion, ResourceDefinitionVersion,
    SubscriptionDefinitionVersion,
};

/// Largest bundle accepted, in bytes. A group at every Greengrass quota (10 000 subscriptions,
/// 2 500 devices, 200 functions and resources) is about 4 MiB of JSON.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

/// The payloads are shared (`Arc`): a bundle can be assembled from versions parsed earlier
/// without copying them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GroupBundle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_definition_version: Option<Arc<CoreDefinitionVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_definition_version: Option<Arc<DeviceDefinitionVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_definition_version: Option<Arc<FunctionDefinitionVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_definition_version: Option<Arc<ConnectorDefinitionVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_definition_version: Option<Arc<ResourceDefinitionVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_definition_version: Option<Arc<SubscriptionDefinitionVersion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logger_definition_version: Option<Arc<LoggerDefinitionVersion>>,
}

/// Why a document could not be read as a bundle (or as any API payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Larger than the stated bound; not read.
    #[error("document is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("document is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    /// Not JSON or YAML at all (or nested deeper than 128 levels).
    #[error("document is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    /// Well-formed, but not the expected shape: a wrong type, an unknown or missing field.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Parse a JSON or YAML document into an API shape, naming the path of the first problem.
///
/// JSON is read when the document starts with `{` (an array is refused: every shape is an
/// object), YAML otherwise. Both parsers stop
/// at a nesting depth of 128, so a deeply nested document is an error, not a stack overflow.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, ParseError> {
    if bytes.len() > limit {
        return Err(ParseError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8(e.valid_up_to()))?;
    let shape_error = |path: String, message: String| ParseError::Invalid {
        path: if path == "." {
            "(document)".into()
        } else {
            path
        },
        message,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        // Every API shape is an object; serde would otherwise read an array as a struct.
        return Err(ParseError::Invalid {
            path: "(document)".into(),
            message: "expected a JSON object, found an array".into(),
        });
    }
    if trimmed.starts_with('{') {
        // One pass straight into the type. Only when that fails is the document read again
        // with path tracking, which costs on every field, to name where it failed.
        if let Ok(value) = serde_json::from_str(text) {
            return Ok(value);
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let value = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ParseError::Syntax {
                    format: "JSON",
                    message: inner.to_string(),
                }
            } else {
                shape_error(path, inner.to_string())
            }
        })?;
        return Ok(value);
    }
    // YAML: syntax first, then shape, so the two failures stay apart.
    let value: serde_json::Value =
        serde_norway::from_str(text).map_err(|e| ParseError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?;
    serde_path_to_error::deserialize(value)
        .map_err(|e| shape_error(e.path().to_string(), e.into_inner().to_string()))
}

impl GroupBundle {
    /// Read a bundle from JSON or YAML bytes, within [`MAX_BUNDLE_BYTES`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
        parse_document(bytes, MAX_BUNDLE_BYTES)
    }
}

impl GroupBundle {
    /// A bundle holding one definition-version payload of `kind`, read from JSON or YAML
    /// (as the API's `Create…DefinitionVersion` receives it).
    pub fn with_definition(kind: DefinitionKind, bytes: &[u8]) -> Result<Self, ParseError> {
        let mut b = Self::default();
        match kind {
            DefinitionKind::Cores => {
                b.core_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
            DefinitionKind::Devices => {
                b.device_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
            DefinitionKind::Functions => {
                b.function_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
            DefinitionKind::Resources => {
                b.resource_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
            DefinitionKind::Connectors => {
                b.connector_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
            DefinitionKind::Subscriptions => {
                b.subscription_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
            DefinitionKind::Loggers => {
                b.logger_definition_version = Some(parse_document(bytes, MAX_BUNDLE_BYTES)?)
            }
        }
        Ok(b)
    }

    /// Take the payload of `kind` from `other`, shared rather than copied (none if `other`
    /// has none).
    pub fn set_definition_from(&mut self, kind: DefinitionKind, other: &GroupBundle) {
        match kind {
            DefinitionKind::Cores => {
                self.core_definition_version = other.core_definition_version.clone()
            }
            DefinitionKind::Devices => {
                self.device_definition_version = other.device_definition_version.clone()
            }
            DefinitionKind::Functions => {
                self.function_definition_version = other.function_definition_version.clone()
            }
            DefinitionKind::Resources => {
                self.resource_definition_version = other.resource_definition_version.clone()
            }
            DefinitionKind::Connectors => {
                self.connector_definition_version = other.connector_definition_version.clone()
            }
            DefinitionKind::Subscriptions => {
                self.subscription_definition_version = other.subscription_definition_version.clone()
            }
            DefinitionKind::Loggers => {
                self.logger_definition_version = other.logger_definition_version.clone()
            }
        }
    }

    /// The JSON of the payload of `kind`, if the bundle has one.
    pub fn definition_json(
        &self,
        kind: DefinitionKind,
    ) -> Option<Box<serde_json::value::RawValue>> {
        use serde_json::value::to_raw_value;
        let json = match kind {
            DefinitionKind::Cores => self.core_definition_version.as_ref().map(to_raw_value),
            DefinitionKind::Devices => self.device_definition_version.as_ref().map(to_raw_value),
            DefinitionKind::Functions => {
                self.function_definition_version.as_ref().map(to_raw_value)
            }
            DefinitionKind::Resources => {
                self.resource_definition_version.as_ref().map(to_raw_value)
            }
            DefinitionKind::Connectors => {
                self.connector_definition_version.as_ref().map(to_raw_value)
            }
            DefinitionKind::Subscriptions => self
                .subscription_definition_version
                .as_ref()
                .map(to_raw_value),
            DefinitionKind::Loggers => self.logger_definition_version.as_ref().map(to_raw_value),
        };
        // The API shapes are plain data; serialising them cannot fail.
        json.and_then(Result::ok)
    }
}
