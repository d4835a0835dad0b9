//! The ARNs a group refers to, each parsed once into a typed value.
//!
//! Every type keeps the exact text it was parsed from (`Display` gives it back), because
//! Greengrass compares ARNs as strings: a subscription must name a function exactly as the
//! function definition does.

use std::fmt;
use std::str::FromStr;

/// Why a string is not the ARN that was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {kind} ARN: {reason}")]
pub struct ArnError {
    pub kind: &'static str,
    pub text: String,
    pub reason: String,
}

/// The six fields of `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
struct Parts<'a> {
    region: &'a str,
    account: &'a str,
    resource: &'a str,
}

fn split<'a>(
    kind: &'static str,
    text: &'a str,
    service: &str,
) -> Result<(Parts<'a>, impl Fn(String) -> ArnError + 'a), ArnError> {
    let err = move |reason: String| ArnError {
        kind,
        text: text.to_owned(),
        reason,
    };
    let mut fields = [""; 6];
    let mut n = 0;
    for f in text.splitn(6, ':') {
        fields[n] = f;
        n += 1;
    }
    if n != 6 || fields[0] != "arn" {
        return Err(err(
            "expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE".into(),
        ));
    }
    if !matches!(fields[1], "aws" | "aws-cn" | "aws-us-gov") {
        return Err(err(format!(
            "partition {:?} is not aws, aws-cn or aws-us-gov",
            fields[1]
        )));
    }
    if fields[2] != service {
        return Err(err(format!(
            "service is {:?}, expected {service:?}",
            fields[2]
        )));
    }
    let region = fields[3];
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err(format!("region {region:?} is not a region name")));
    }
    Ok((
        Parts {
            region,
            account: fields[4],
            resource: fields[5],
        },
        err,
    ))
}

fn require_region(parts: &Parts<'_>, err: &impl Fn(String) -> ArnError) -> Result<(), ArnError> {
    if parts.region.is_empty() {
        return Err(err("the region is empty".into()));
    }
    Ok(())
}

fn require_account(parts: &Parts<'_>, err: &impl Fn(String) -> ArnError) -> Result<(), ArnError> {
    if parts.account.len() != 12 || !parts.account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("account {:?} is not 12 digits", parts.account)));
    }
    Ok(())
}

/// Greengrass entity ids and thing names: `[a-zA-Z0-9:_-]+`, at most 128 characters.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

macro_rules! arn_common {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
        impl FromStr for $t {
            type Err = ArnError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.text
            }
        }
    };
}

/// `arn:aws:iot:REGION:ACCOUNT:thing/NAME`: a core or a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThingArn {
    text: String,
    name_at: usize,
}

impl ThingArn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let (parts, err) = split("thing", text, "iot")?;
        require_region(&parts, &err)?;
        require_account(&parts, &err)?;
        let name = parts
            .resource
            .strip_prefix("thing/")
            .ok_or_else(|| err("the resource must be thing/NAME".into()))?;
        if !is_valid_id(name) {
            return Err(err(format!(
                "thing name {name:?} must be 1-128 characters of [a-zA-Z0-9:_-]"
            )));
        }
        Ok(Self {
            text: text.to_owned(),
            name_at: text.len() - name.len(),
        })
    }

    pub fn thing_name(&self) -> &str {
        &self.text[self.name_at..]
    }
}
arn_common!(ThingArn);

/// `arn:aws:iot:REGION:ACCOUNT:cert/ID`: a device or core certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateArn {
    text: String,
}

impl CertificateArn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let (parts, err) = split("certificate", text, "iot")?;
        require_region(&parts, &err)?;
        require_account(&parts, &err)?;
        let id = parts
            .resource
            .strip_prefix("cert/")
            .ok_or_else(|| err("the resource must be cert/ID".into()))?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(format!(
                "certificate id {id:?} must be 1-64 hexadecimal digits"
            )));
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// The certificate id: in AWS IoT, the SHA-256 of the certificate's DER, in hex.
    pub fn certificate_id(&self) -> &str {
        self.text.rsplit('/').next().unwrap_or_default()
    }
}
arn_common!(CertificateArn);

/// The qualifier at the end of a Lambda function ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualifier {
    Version(u32),
    Alias(String),
    Latest,
}

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, or a Greengrass system
/// function such as `arn:aws:lambda:::function:GGRouter`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LambdaArn {
    text: String,
    name: String,
    qualifier: Option<Qualifier>,
    system: bool,
}

impl LambdaArn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let (parts, err) = split("Lambda function", text, "lambda")?;
        let system = parts.region.is_empty() && parts.account.is_empty();
        if !system {
            require_region(&parts, &err)?;
            require_account(&parts, &err)?;
        }
        let rest = parts
            .resource
            .strip_prefix("function:")
            .ok_or_else(|| err("the resource must be function:NAME[:QUALIFIER]".into()))?;
        let (name, qualifier) = match rest.split_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (rest, None),
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(format!(
                "function name {name:?} must be 1-64 characters of [a-zA-Z0-9-_]"
            )));
        }
        let qualifier = match qualifier {
            None => None,
            Some("$LATEST") => Some(Qualifier::Latest),
            Some(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Qualifier::Version(q.parse().map_err(|_| {
                    err(format!("version {q:?} is out of range"))
                })?))
            }
            Some(q)
                if !q.is_empty()
                    && q.len() <= 128
                    && q.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(Qualifier::Alias(q.to_owned()))
            }
            Some(q) => {
                return Err(err(format!(
                    "qualifier {q:?} is neither a version number nor an alias"
                )));
            }
        };
        Ok(Self {
            text: text.to_owned(),
            name: name.to_owned(),
            qualifier,
            system,
        })
    }

    pub fn function_name(&self) -> &str {
        &self.name
    }

    pub fn qualifier(&self) -> Option<&Qualifier> {
        self.qualifier.as_ref()
    }

    /// A Greengrass system function (empty region and account).
    pub fn is_system(&self) -> bool {
        self.system
    }
}
arn_common!(LambdaArn);

/// `arn:aws:greengrass:REGION::/connectors/NAME/versions/N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectorArn {
    text: String,
    name: String,
    version: u32,
}

impl ConnectorArn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let (parts, err) = split("connector", text, "greengrass")?;
        require_region(&parts, &err)?;
        if !parts.account.is_empty() {
            return Err(err(
                "the account field must be empty (connectors are owned by AWS)".into(),
            ));
        }
        let rest = parts
            .resource
            .strip_prefix("/connectors/")
            .ok_or_else(|| err("the resource must be /connectors/NAME/versions/N".into()))?;
        let (name, version) = rest
            .split_once("/versions/")
            .ok_or_else(|| err("the resource must be /connectors/NAME/versions/N".into()))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(format!("connector name {name:?} is not a name")));
        }
        let version = version
            .parse::<u32>()
            .ok()
            .filter(|v| *v > 0 && !version.starts_with('+'))
            .ok_or_else(|| err(format!("version {version:?} is not a positive integer")))?;
        Ok(Self {
            text: text.to_owned(),
            name: name.to_owned(),
            version,
        })
    }

    pub fn connector_name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}
arn_common!(ConnectorArn);

/// The seven kinds of definition, as they appear in API paths and ARNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefinitionKind {
    Connectors,
    Cores,
    Devices,
    Functions,
    Loggers,
    Resources,
    Subscriptions,
}

impl DefinitionKind {
    pub const ALL: [DefinitionKind; 7] = [
        Self::Connectors,
        Self::Cores,
        Self::Devices,
        Self::Functions,
        Self::Loggers,
        Self::Resources,
        Self::Subscriptions,
    ];

    /// The path segment: `connectors`, `cores`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connectors => "connectors",
            Self::Cores => "cores",
            Self::Devices => "devices",
            Self::Functions => "functions",
            Self::Loggers => "loggers",
            Self::Resources => "resources",
            Self::Subscriptions => "subscriptions",
        }
    }

    pub fn from_segment(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `arn:aws:greengrass:REGION:ACCOUNT:/greengrass/definition/KIND/ID/versions/VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DefinitionVersionArn {
    text: String,
    kind: DefinitionKind,
    definition_id: String,
    version_id: String,
}

impl DefinitionVersionArn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let (parts, err) = split("definition version", text, "greengrass")?;
        require_region(&parts, &err)?;
        require_account(&parts, &err)?;
        let shape =
            || err("the resource must be /greengrass/definition/KIND/ID/versions/VERSION".into());
        let rest = parts
            .resource
            .strip_prefix("/greengrass/definition/")
            .ok_or_else(shape)?;
        let segs: Vec<&str> = rest.split('/').collect();
        let [kind, id, "versions", version] = segs[..] else {
            return Err(shape());
        };
        let kind = DefinitionKind::from_segment(kind)
            .ok_or_else(|| err(format!("{kind:?} is not a definition kind")))?;
        if id.is_empty() || version.is_empty() {
            return Err(shape());
        }
        Ok(Self {
            text: text.to_owned(),
            kind,
            definition_id: id.to_owned(),
            version_id: version.to_owned(),
        })
    }

    pub fn kind(&self) -> DefinitionKind {
        self.kind
    }
    pub fn definition_id(&self) -> &str {
        &self.definition_id
    }
    pub fn version_id(&self) -> &str {
        &self.version_id
    }
}
arn_common!(DefinitionVersionArn);

/// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretArn {
    text: String,
    name: String,
}

impl SecretArn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let (parts, err) = split("Secrets Manager secret", text, "secretsmanager")?;
        require_region(&parts, &err)?;
        require_account(&parts, &err)?;
        let full = parts
            .resource
            .strip_prefix("secret:")
            .ok_or_else(|| err("the resource must be secret:NAME-SUFFIX".into()))?;
        // Secrets Manager appends '-' and six random characters to the name.
        let name = match full.rsplit_once('-') {
            Some((name, suffix))
                if !name.is_empty()
                    && suffix.len() == 6
                    && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                name
            }
            _ => {
                return Err(err(format!(
                    "{full:?} does not end in the 6-character suffix Secrets Manager adds (NAME-AbCdEf)"
                )));
            }
        };
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
        {
            return Err(err(format!(
                "secret name {name:?} has characters Secrets Manager does not allow"
            )));
        }
        Ok(Self {
            text: text.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The secret's name, without the random suffix.
    pub fn secret_name(&self) -> &str {
        &self.name
    }
}
arn_common!(SecretArn);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing() {
        let a = ThingArn::parse("arn:aws:iot:us-east-1:123456789012:thing/core-1").unwrap();
        assert_eq!(a.thing_name(), "core-1");
        assert_eq!(
            a.to_string(),
            "arn:aws:iot:us-east-1:123456789012:thing/core-1"
        );
        let e = ThingArn::parse("arn:aws:iot:us-east-1:1234:thing/x").unwrap_err();
        assert!(e.to_string().contains("12 digits"), "{e}");
        assert!(ThingArn::parse("arn:aws:iot:us-east-1:123456789012:thing/").is_err());
        assert!(ThingArn::parse("arn:aws:iot:us-east-1:123456789012:thing/a b").is_err());
        assert!(ThingArn::parse("nonsense").is_err());
    }

    #[test]
    fn lambda() {
        let a =
            LambdaArn::parse("arn:aws:lambda:us-east-1:123456789012:function:Temp:prod").unwrap();
        assert_eq!(a.function_name(), "Temp");
        assert_eq!(a.qualifier(), Some(&Qualifier::Alias("prod".into())));
        let v = LambdaArn::parse("arn:aws:lambda:us-east-1:123456789012:function:Temp:3").unwrap();
        assert_eq!(v.qualifier(), Some(&Qualifier::Version(3)));
        let l = LambdaArn::parse("arn:aws:lambda:us-east-1:123456789012:function:Temp:$LATEST")
            .unwrap();
        assert_eq!(l.qualifier(), Some(&Qualifier::Latest));
        let bare = LambdaArn::parse("arn:aws:lambda:us-east-1:123456789012:function:Temp").unwrap();
        assert_eq!(bare.qualifier(), None);
        let sys = LambdaArn::parse("arn:aws:lambda:::function:GGCloudSpooler:1").unwrap();
        assert!(sys.is_system());
        assert!(LambdaArn::parse("arn:aws:lambda:us-east-1:123456789012:function:T:a.b").is_err());
        assert!(LambdaArn::parse("arn:aws:lambda:us-east-1:123456789012:layer:T").is_err());
    }

    #[test]
    fn connector() {
        let a = ConnectorArn::parse(
            "arn:aws:greengrass:us-west-2::/connectors/TwilioNotifications/versions/4",
        )
        .unwrap();
        assert_eq!(
            (a.connector_name(), a.version()),
            ("TwilioNotifications", 4)
        );
        assert!(
            ConnectorArn::parse("arn:aws:greengrass:us-west-2::/connectors/X/versions/0").is_err()
        );
        assert!(
            ConnectorArn::parse("arn:aws:greengrass:us-west-2::/connectors/X/versions/+1").is_err()
        );
        let e = ConnectorArn::parse(
            "arn:aws:greengrass:us-west-2:123456789012:/connectors/X/versions/1",
        )
        .unwrap_err();
        assert!(e.reason.contains("account field must be empty"));
        assert!(
            ConnectorArn::parse(
                "arn:aws:greengrass:us-west-2::/connectors/ImageClassificationx86-64/versions/2"
            )
            .is_ok()
        );
    }

    #[test]
    fn definition_version() {
        let a = DefinitionVersionArn::parse("arn:aws:greengrass:us-west-2:123456789012:/greengrass/definition/cores/abc/versions/def").unwrap();
        assert_eq!(a.kind(), DefinitionKind::Cores);
        assert_eq!((a.definition_id(), a.version_id()), ("abc", "def"));
        assert!(DefinitionVersionArn::parse("arn:aws:greengrass:us-west-2:123456789012:/greengrass/definition/things/abc/versions/def").is_err());
        assert!(DefinitionVersionArn::parse("arn:aws:greengrass:us-west-2:123456789012:greengrass/definition/cores/abc/versions/def").is_err());
    }

    #[test]
    fn secret() {
        let a = SecretArn::parse("arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-TwilioAuthToken-ntSlp6").unwrap();
        assert_eq!(a.secret_name(), "greengrass-TwilioAuthToken");
        assert!(
            SecretArn::parse("arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-x")
                .is_err()
        );
    }
}
