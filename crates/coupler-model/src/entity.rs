//! The things a subscription can name as Source or Target.

use std::fmt;
use std::sync::Arc;

/// A participant in the group's message flow. The subscription table is written in these.
///
/// Names are shared strings so that a message can carry its source cheaply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// AWS IoT Core, or whatever upstream broker the core is bridged to (`cloud`).
    Cloud,
    /// The local shadow service (`GGShadowService`).
    ShadowService,
    /// A client device, by thing name (which is also its MQTT client id).
    Device(Arc<str>),
    /// A user function, by its ARN exactly as the function definition gives it.
    Function(Arc<str>),
    /// A connector instance, by its versioned connector ARN (one instance per connector).
    Connector(Arc<str>),
}

impl Entity {
    pub fn device(thing_name: &str) -> Self {
        Self::Device(Arc::from(thing_name))
    }
    pub fn function(arn: &str) -> Self {
        Self::Function(Arc::from(arn))
    }
    pub fn connector(arn: &str) -> Self {
        Self::Connector(Arc::from(arn))
    }

    /// The kind of entity, for counters and logs.
    pub fn kind(&self) -> EntityKind {
        match self {
            Self::Cloud => EntityKind::Cloud,
            Self::ShadowService => EntityKind::ShadowService,
            Self::Device(_) => EntityKind::Device,
            Self::Function(_) => EntityKind::Function,
            Self::Connector(_) => EntityKind::Connector,
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cloud => f.write_str("cloud"),
            Self::ShadowService => f.write_str("GGShadowService"),
            Self::Device(name) => write!(f, "thing/{name}"),
            Self::Function(arn) | Self::Connector(arn) => f.write_str(arn),
        }
    }
}

/// The five kinds of [`Entity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Cloud,
    ShadowService,
    Device,
    Function,
    Connector,
}

impl EntityKind {
    pub const ALL: [EntityKind; 5] = [
        Self::Cloud,
        Self::ShadowService,
        Self::Device,
        Self::Function,
        Self::Connector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cloud => "cloud",
            Self::ShadowService => "shadow",
            Self::Device => "device",
            Self::Function => "function",
            Self::Connector => "connector",
        }
    }
}
