//! Ids, timestamps, ARNs and pages as the Greengrass API writes them.

use std::collections::BTreeMap;

use coupler_model::arn::DefinitionKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::iso8601::{
    Config, EncodedConfig, Iso8601, TimePrecision,
};

use crate::error::{ApiError, ApiResult};

/// Where this control plane says it is: the region and account in every ARN it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub region: String,
    pub account_id: String,
}

impl Identity {
    fn prefix(&self) -> String {
        format!("arn:aws:greengrass:{}:{}:", self.region, self.account_id)
    }

    pub fn definition_arn(&self, kind: DefinitionKind, id: &str) -> String {
        format!(
            "{}/greengrass/definition/{}/{id}",
            self.prefix(),
            kind.as_str()
        )
    }

    pub fn definition_version_arn(&self, kind: DefinitionKind, id: &str, version: &str) -> String {
        format!("{}/versions/{version}", self.definition_arn(kind, id))
    }

    pub fn group_arn(&self, id: &str) -> String {
        format!("{}/greengrass/groups/{id}", self.prefix())
    }

    pub fn group_version_arn(&self, id: &str, version: &str) -> String {
        format!("{}/versions/{version}", self.group_arn(id))
    }

    pub fn deployment_arn(&self, group: &str, deployment: &str) -> String {
        format!("{}/deployments/{deployment}", self.group_arn(group))
    }

    pub fn ca_arn(&self, group: &str, ca: &str) -> String {
        format!("{}/certificateauthorities/{ca}", self.group_arn(group))
    }

    /// What a taggable ARN of ours names, if it is one.
    pub fn parse_taggable(&self, arn: &str) -> Option<Taggable> {
        let rest = arn.strip_prefix(&self.prefix())?;
        let segs: Vec<&str> = rest.split('/').collect();
        match segs[..] {
            ["", "greengrass", "definition", kind, id] => Some(Taggable::Definition(
                DefinitionKind::from_segment(kind)?,
                id.to_owned(),
            )),
            ["", "greengrass", "groups", id] => Some(Taggable::Group(id.to_owned())),
            _ => None,
        }
    }
}

/// Resources that carry tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taggable {
    Definition(DefinitionKind, String),
    Group(String),
}

/// A new service id: a lowercase UUID, as Greengrass issues.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

const TIMESTAMP: EncodedConfig = Config::DEFAULT
    .set_time_precision(TimePrecision::Second {
        decimal_digits: std::num::NonZeroU8::new(3),
    })
    .encode();

/// `2019-11-11T05:47:31.435Z`: ISO-8601 UTC with milliseconds, as the service answers.
pub fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Iso8601::<TIMESTAMP>)
        .unwrap_or_default()
}

pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

pub type Tags = BTreeMap<String, String>;

/// Greengrass names: at most this many characters.
pub const MAX_NAME_CHARS: usize = 128;

pub fn check_name(name: &str) -> ApiResult<()> {
    let n = name.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "Name: {n} characters; the limit is {MAX_NAME_CHARS}"
        )));
    }
    Ok(())
}

/// AWS tag limits: 50 tags, keys up to 128 characters, values up to 256, no `aws:` prefix.
pub fn check_tags(tags: &Tags) -> ApiResult<()> {
    if tags.len() > 50 {
        return Err(ApiError::bad_request(format!(
            "tags: {} tags; the limit is 50",
            tags.len()
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") {
            return Err(ApiError::bad_request(format!(
                "tags: key {k:?} must be 1-128 characters and not start with aws:"
            )));
        }
        if v.chars().count() > 256 {
            return Err(ApiError::bad_request(format!(
                "tags.{k}: the value is over 256 characters"
            )));
        }
    }
    Ok(())
}

/// `MaxResults` and `NextToken` of a List call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: Option<i64>,
    pub limit: usize,
}

/// Page size when `MaxResults` is not given; the AWS CLI follows `NextToken` either way.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

impl Page {
    pub fn parse(max_results: Option<&str>, next_token: Option<&str>) -> ApiResult<Self> {
        let limit = match max_results {
            None => DEFAULT_PAGE,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "MaxResults: {s:?} must be a number from 1 to {MAX_PAGE}"
                    )));
                }
            },
        };
        let after = match next_token {
            None | Some("") => None,
            Some(t) => Some(t.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "NextToken: {t:?} is not a token this service issued"
                ))
            })?),
        };
        Ok(Self { after, limit })
    }
}

/// Why a JSON request body does not fit its shape.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON at all.
    Syntax(serde_json::Error),
    /// JSON of the wrong shape; `path` is the member at fault (`.` for the whole body).
    Shape {
        path: String,
        error: serde_json::Error,
    },
}

/// Deserialize a JSON request body (an empty one is `{}`), keeping the path of a problem.
pub fn deserialize_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let error = e.into_inner();
        if error.is_syntax() || error.is_eof() {
            BodyError::Syntax(error)
        } else {
            BodyError::Shape { path, error }
        }
    })
}

/// Parse a JSON request body into a request shape. A problem names its field.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    deserialize_body(body).map_err(|e| match e {
        BodyError::Syntax(e) => {
            ApiError::bad_request(format!("The request body is not valid JSON: {e}"))
        }
        BodyError::Shape { path, error } if path == "." => {
            ApiError::bad_request(format!("The request body is invalid: {error}"))
        }
        BodyError::Shape { path, error } => ApiError::bad_request(format!("{path}: {error}")),
    })
}

/// Serialize a response record.
pub fn to_json<T: Serialize>(v: &T) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()))
}

pub fn from_json<T: for<'de> Deserialize<'de>>(v: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(v).map_err(|e| ApiError::Internal(format!("stored record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_573_451_251_435_000_000).unwrap();
        assert_eq!(timestamp(t), "2019-11-11T05:47:31.435Z");
    }

    #[test]
    fn pages() {
        assert_eq!(
            Page::parse(None, None).unwrap(),
            Page {
                after: None,
                limit: DEFAULT_PAGE
            }
        );
        assert_eq!(
            Page::parse(Some("5"), Some("42")).unwrap(),
            Page {
                after: Some(42),
                limit: 5
            }
        );
        assert!(Page::parse(Some("0"), None).is_err());
        assert!(Page::parse(Some("x"), None).is_err());
        assert!(Page::parse(None, Some("-1")).is_err());
    }

    #[test]
    fn arns() {
        let id = Identity {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        };
        let arn = id.definition_version_arn(DefinitionKind::Cores, "a", "b");
        assert_eq!(
            arn,
            "arn:aws:greengrass:us-east-1:123456789012:/greengrass/definition/cores/a/versions/b"
        );
        assert!(coupler_model::arn::DefinitionVersionArn::parse(&arn).is_ok());
        assert_eq!(
            id.parse_taggable(&id.definition_arn(DefinitionKind::Loggers, "x")),
            Some(Taggable::Definition(DefinitionKind::Loggers, "x".into()))
        );
        assert_eq!(
            id.parse_taggable(&id.group_arn("g")),
            Some(Taggable::Group("g".into()))
        );
        assert_eq!(id.parse_taggable("arn:aws:iot:us-east-1:1:thing/x"), None);
    }
}
