//! The few AWS calls the service connectors make (SNS, Kinesis Firehose, CloudWatch):
//! credentials from the standard chain, endpoints from the standard variables, SigV4 signing
//! with `aws-sigv4`, the Query and JSON 1.1 wire protocols, and bounded retries with backoff.
//!
//! Requests are built by hand from the botocore service models rather than with the AWS SDK,
//! which would triple the build and the binary for four operations.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tokio_util::sync::CancellationToken;

/// How long one HTTP request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One AWS service, as its endpoint and signature name it.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The SigV4 signing name (`sns`, `firehose`, `monitoring`).
    pub signing_name: &'static str,
    /// The host prefix of its regional endpoint.
    pub endpoint_prefix: &'static str,
    /// The suffix of its `AWS_ENDPOINT_URL_<SERVICE>` variable.
    pub env_name: &'static str,
}

pub const SNS: Service = Service {
    signing_name: "sns",
    endpoint_prefix: "sns",
    env_name: "SNS",
};

pub const FIREHOSE: Service = Service {
    signing_name: "firehose",
    endpoint_prefix: "firehose",
    env_name: "FIREHOSE",
};

pub const CLOUDWATCH: Service = Service {
    signing_name: "monitoring",
    endpoint_prefix: "monitoring",
    env_name: "CLOUDWATCH",
};

/// The environment as a lookup, so tests can give their own.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment; empty values count as unset, as in the AWS SDKs.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for std::collections::BTreeMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
    }
}

/// The endpoint for `service` in `region`: `AWS_ENDPOINT_URL_<SERVICE>`, then
/// `AWS_ENDPOINT_URL`, then the service's regional endpoint.
pub fn endpoint(env: &dyn Env, service: Service, region: &str) -> String {
    if let Some(url) = env
        .var(&format!("AWS_ENDPOINT_URL_{}", service.env_name))
        .or_else(|| env.var("AWS_ENDPOINT_URL"))
    {
        return url.trim_end_matches('/').to_owned();
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{}.{region}.{suffix}", service.endpoint_prefix)
}

/// The core's credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`), else the `AWS_PROFILE` (or `default`) profile of the shared
/// credentials file (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`).
pub fn credentials(env: &dyn Env) -> Result<Credentials, String> {
    if let (Some(key), Some(secret)) = (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Credentials::new(
            key,
            secret,
            env.var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ));
    }
    let path = match env.var("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => match env.var("HOME") {
            Some(home) => PathBuf::from(home).join(".aws").join("credentials"),
            None => return Err("no AWS credentials: AWS_ACCESS_KEY_ID is not set and there is no HOME for ~/.aws/credentials".into()),
        },
    };
    let profile = env.var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no AWS credentials: AWS_ACCESS_KEY_ID is not set and {} cannot be read: {e}",
            path.display()
        )
    })?;
    profile_credentials(&text, &profile).ok_or_else(|| {
        format!(
            "no AWS credentials for profile {profile:?} in {}",
            path.display()
        )
    })
}

/// The keys of `profile` in a shared credentials file (INI: `[name]`, then `key = value`).
fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut section = None::<&str>;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim());
            continue;
        }
        if section != Some(profile) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials::new(
        key?,
        secret?,
        token,
        None,
        "shared-credentials-file",
    ))
}

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The AWS error code (`NotFound`, `ResourceNotFoundException`), or the botocore name of
    /// a transport failure (`EndpointConnectionError`, `ReadTimeoutError`).
    pub code: String,
    pub message: String,
    /// Whether trying again later may succeed (transport failures, throttling, 5xx).
    pub retryable: bool,
}

impl CallError {
    fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Error codes worth another try, whatever the HTTP status.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalErrorException",
    "InternalServerError",
];

/// How often and how patiently a call is tried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 3,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A request body and how it is sent.
#[derive(Debug, Clone)]
pub enum Body {
    /// The Query protocol: form-encoded parameters.
    Query(Vec<(String, String)>),
    /// JSON 1.1: the `X-Amz-Target` and a JSON document.
    Json { target: String, body: Vec<u8> },
}

impl Body {
    fn content_type(&self) -> &'static str {
        match self {
            Self::Query(_) => "application/x-www-form-urlencoded; charset=utf-8",
            Self::Json { .. } => "application/x-amz-json-1.1",
        }
    }

    fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Self::Query(params) => Cow::Owned(crate::http::form_encode(params).into_bytes()),
            Self::Json { body, .. } => Cow::Borrowed(body),
        }
    }
}

/// A client of one service in one region.
#[derive(Debug, Clone)]
pub struct Client {
    http: crate::http::Http,
    service: Service,
    region: String,
    endpoint: String,
    retry: Retry,
}

impl Client {
    /// A client for `service` in `region`, its endpoint from the process environment.
    pub fn new(service: Service, region: &str) -> Result<Self, String> {
        Ok(Self {
            http: crate::http::client(REQUEST_TIMEOUT)?,
            service,
            region: region.to_owned(),
            endpoint: endpoint(&ProcessEnv, service, region),
            retry: Retry::default(),
        })
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Send `body`, trying again with backoff while the failure is retryable, at most
    /// `retry.attempts` times; gives up at once when `cancel` fires. The response body on
    /// success.
    pub async fn call(&self, body: &Body, cancel: &CancellationToken) -> Result<String, CallError> {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        loop {
            let result = self.once(body).await;
            match result {
                Err(e) if e.retryable && attempt < self.retry.attempts => {
                    tracing::debug!(
                        service = self.service.signing_name,
                        attempt,
                        "{e}; retrying"
                    );
                    tokio::select! {
                        () = cancel.cancelled() => return Err(e),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn once(&self, body: &Body) -> Result<String, CallError> {
        // Read each time: a rotated key or a refreshed session token takes effect at once.
        let creds =
            credentials(&ProcessEnv).map_err(|m| CallError::fatal("NoCredentialsError", m))?;
        let url = format!("{}/", self.endpoint);
        let bytes = body.bytes();
        let mut headers = vec![("content-type", body.content_type().to_owned())];
        if let Body::Json { target, .. } = body {
            headers.push(("x-amz-target", target.clone()));
        }
        let signed = sign_headers(
            &url,
            &headers,
            &bytes,
            &creds,
            &self.region,
            self.service.signing_name,
            SystemTime::now(),
        )
        .map_err(|m| CallError::fatal("SigningError", m))?;
        let mut req = self.http.post(&url).body(bytes.into_owned());
        for (k, v) in headers.iter().map(|(k, v)| (*k, v.as_str())) {
            req = req.header(k, v);
        }
        for (k, v) in &signed {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let header_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.map_err(transport_error)?;
        if status.is_success() {
            return Ok(text);
        }
        let (code, message) = match body {
            Body::Query(_) => (
                xml_text(&text, "Code").unwrap_or_default(),
                xml_text(&text, "Message").unwrap_or_default(),
            ),
            Body::Json { .. } => json_error(&text, header_type.as_deref()),
        };
        let code = if code.is_empty() {
            format!("HTTP{}", status.as_u16())
        } else {
            code
        };
        let retryable = status.is_server_error()
            || status.as_u16() == 429
            || RETRYABLE_CODES.contains(&code.as_str());
        Err(CallError {
            code,
            message: if message.is_empty() {
                format!("HTTP status {status}")
            } else {
                message
            },
            retryable,
        })
    }
}

fn transport_error(e: reqwest::Error) -> CallError {
    let code = if e.is_timeout() {
        "ReadTimeoutError"
    } else {
        "EndpointConnectionError"
    };
    // reqwest's own text hides the cause (refused, no route); the chain has it.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    CallError {
        code: code.into(),
        message,
        retryable: true,
    }
}

/// The SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` with a
/// session token) for a POST of `body` to `url` with `headers`.
pub fn sign_headers(
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    creds: &Credentials,
    region: &str,
    signing_name: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// The text of the first `<tag>` element, entities decoded. AWS Query responses are small
/// and flat enough that this is all the XML reading needed.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(xml_unescape(xml[start..end].trim()))
}

fn xml_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The code and message of a JSON-protocol error (`__type` may read `namespace#Code`).
fn json_error(text: &str, header_type: Option<&str>) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let raw = header_type
        .map(str::to_owned)
        .or_else(|| v.get("__type").and_then(|t| t.as_str()).map(str::to_owned))
        .or_else(|| v.get("code").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let code = raw
        .rsplit('#')
        .next()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let message = ["message", "Message", "errorMessage"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
        .unwrap_or_default()
        .to_owned();
    (code, message)
}

/// The region and the last part of an ARN `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
pub fn arn_region_and_resource(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_, _, _, region, _, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    Some((region, resource))
}

/// Whether `value` is acceptable for the catalog parameter `param` of `name` at `version`;
/// a per-message override of an ARN parameter meets the same pattern.
pub fn check_param(name: &str, version: u32, param: &str, value: &str) -> Result<(), String> {
    let catalog = coupler_model::catalog::Catalog::builtin();
    let Some(p) = catalog.get(name, version).and_then(|c| c.parameter(param)) else {
        return Err(format!("{name} version {version} has no parameter {param}"));
    };
    coupler_model::catalog::check_value(p, value)
}

/// Seconds since the epoch as ISO 8601 UTC with milliseconds, the Query protocol's
/// timestamp format.
pub fn iso8601(secs: f64) -> String {
    let millis = (secs * 1000.0).round() as i64;
    let (days, ms) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn endpoints_follow_the_standard_variables() {
        let none = BTreeMap::new();
        assert_eq!(
            endpoint(&none, SNS, "eu-west-1"),
            "https://sns.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(&none, CLOUDWATCH, "cn-north-1"),
            "https://monitoring.cn-north-1.amazonaws.com.cn"
        );
        let all = BTreeMap::from([("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/")]);
        assert_eq!(
            endpoint(&all, FIREHOSE, "us-east-1"),
            "http://127.0.0.1:5000"
        );
        let both = BTreeMap::from([
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_FIREHOSE", "http://127.0.0.1:6000"),
            ("AWS_ENDPOINT_URL_SNS", ""),
        ]);
        assert_eq!(
            endpoint(&both, FIREHOSE, "us-east-1"),
            "http://127.0.0.1:6000"
        );
        assert_eq!(endpoint(&both, SNS, "us-east-1"), "http://127.0.0.1:5000");
    }

    #[test]
    fn credentials_from_the_environment_first() {
        let env = BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ]);
        let c = credentials(&env).expect("credentials");
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("AKID", "SECRET", Some("TOKEN"))
        );
    }

    #[test]
    fn credentials_from_the_shared_file_and_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "# comment\n[default]\naws_access_key_id = D1\naws_secret_access_key = DS\n\n\
             [edge]\naws_access_key_id=E1\naws_secret_access_key=ES\naws_session_token = ET\n",
        )
        .expect("write");
        let file = path.to_str().expect("utf-8");
        let env = BTreeMap::from([("AWS_SHARED_CREDENTIALS_FILE", file)]);
        let c = credentials(&env).expect("default profile");
        assert_eq!((c.access_key_id(), c.session_token()), ("D1", None));
        let env = BTreeMap::from([
            ("AWS_SHARED_CREDENTIALS_FILE", file),
            ("AWS_PROFILE", "edge"),
        ]);
        let c = credentials(&env).expect("edge profile");
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("E1", "ES", Some("ET"))
        );
        let env = BTreeMap::from([("AWS_SHARED_CREDENTIALS_FILE", file), ("AWS_PROFILE", "x")]);
        assert!(credentials(&env).unwrap_err().contains("\"x\""));
        let home = dir.path().to_str().expect("utf-8");
        let env = BTreeMap::from([("HOME", home)]);
        assert!(credentials(&env).unwrap_err().contains(".aws/credentials"));
    }

    #[test]
    fn signing_is_deterministic_and_matches_botocore() {
        let creds = Credentials::new("AKIDEXAMPLE", "SECRETEXAMPLE", None, None, "test");
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )];
        let body = b"Action=Publish&Message=hi&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At&Version=2010-03-31";
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sign = || {
            sign_headers(
                "http://127.0.0.1:5000/",
                &headers,
                body,
                &creds,
                "us-east-1",
                "sns",
                time,
            )
            .expect("signed")
        };
        let signed = sign();
        assert_eq!(signed, sign());
        let get = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20231114T221320Z"));
        // The same request signed by botocore's SigV4Auth at the same instant.
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/sns/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=fea946be8f685f4b8e5b43e1ebf2feda078aa41a50cbc4e496e389a133bf2a88"
            )
        );
        let with_token = Credentials::new("AKID", "S", Some("TOKEN".into()), None, "test");
        let signed =
            sign_headers("https://x/", &[], b"", &with_token, "r", "s", time).expect("signed");
        assert!(
            signed
                .iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "TOKEN")
        );
    }

    #[test]
    fn errors_are_read_from_both_protocols() {
        let xml = "<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code>\
                   <Message>Topic does not exist &amp; never did</Message></Error></ErrorResponse>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("NotFound"));
        assert_eq!(
            xml_text(xml, "Message").as_deref(),
            Some("Topic does not exist & never did")
        );
        assert_eq!(
            json_error(
                r#"{"__type":"com.amazon#ResourceNotFoundException","message":"gone"}"#,
                None
            ),
            ("ResourceNotFoundException".into(), "gone".into())
        );
        assert_eq!(
            json_error("", Some("ThrottlingException:http://internal")),
            ("ThrottlingException".into(), String::new())
        );
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_539_027_324.25), "2018-10-08T19:35:24.250Z");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn arns_split() {
        assert_eq!(
            arn_region_and_resource("arn:aws:firehose:us-west-2:123456789012:deliverystream/s"),
            Some(("us-west-2", "deliverystream/s"))
        );
        assert_eq!(arn_region_and_resource("arn:aws:sns"), None);
    }
}
