//! A *group bundle*: every definition version of one group in one JSON or YAML document.
//!
//! Each key holds exactly the API payload of that definition version, so a bundle can be
//! assembled from `aws greengrass get-*-definition-version` output and turned back into API
//! calls. See `docs/group-bundle.md`.

use serde::{Deserialize, Serialize};

use crate::api::{
    ConnectorDefinitionVersion, CoreDefinitionVersion, DeviceDefinitionVersion,
    FunctionDefinitionVersion, LoggerDefinitionVersion, ResourceDefinitionVersion,
    SubscriptionDefinitionVersion,
};

/// Largest bundle accepted, in bytes. A group at every Greengrass quota (10 000 subscriptions,
/// 2 500 devices, 200 functions and resources) is about 4 MiB of JSON.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GroupBundle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_definition_version: Option<CoreDefinitionVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_definition_version: Option<DeviceDefinitionVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_definition_version: Option<FunctionDefinitionVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector_definition_version: Option<ConnectorDefinitionVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_definition_version: Option<ResourceDefinitionVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_definition_version: Option<SubscriptionDefinitionVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logger_definition_version: Option<LoggerDefinitionVersion>,
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
/// JSON is read when the document starts with `{` or `[`, YAML otherwise. Both parsers stop
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
    // Syntax first, then shape: a syntax error and a wrong field are different failures.
    let value: serde_json::Value = if text.trim_start().starts_with(['{', '[']) {
        serde_json::from_str(text).map_err(|e| ParseError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?
    } else {
        serde_norway::from_str(text).map_err(|e| ParseError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ParseError::Invalid {
            path: if path == "." {
                "(document)".into()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })
}

impl GroupBundle {
    /// Read a bundle from JSON or YAML bytes, within [`MAX_BUNDLE_BYTES`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
        parse_document(bytes, MAX_BUNDLE_BYTES)
    }
}
