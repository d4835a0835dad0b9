use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use coupler_model::{Entity, TopicName};

/// MQTT's delivery guarantee of a message. Greengrass moved everything local at
/// [`Qos::AtMostOnce`]; Coupler's MQTT server keeps what a device asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Qos {
    #[default]
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

/// MQTT 5 properties a message carries from its publisher to its subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// User properties, in order; a name may repeat.
    pub user: Vec<(Arc<str>, Arc<str>)>,
    pub content_type: Option<Arc<str>>,
    pub response_topic: Option<Arc<str>>,
    pub correlation_data: Option<Bytes>,
    /// The payload format indicator: UTF-8 text.
    pub payload_utf8: bool,
    /// When the message stops being deliverable (from the message expiry interval).
    pub expires_at: Option<Instant>,
}

/// One message on its way through the group.
///
/// Cloning is cheap and never allocates: the source, topic and payload are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub source: Entity,
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: Qos,
    /// Published with MQTT's retain flag.
    pub retain: bool,
    /// MQTT 5 properties, shared; `None` for most messages.
    pub properties: Option<Arc<Properties>>,
}

impl Message {
    /// A QoS 0 message without the retain flag.
    pub fn new(source: Entity, topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            source,
            topic,
            payload: payload.into(),
            qos: Qos::AtMostOnce,
            retain: false,
            properties: None,
        }
    }

    #[must_use]
    pub fn with_properties(mut self, properties: Option<Arc<Properties>>) -> Self {
        self.properties = properties;
        self
    }

    /// Whether the message's expiry interval has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.properties
            .as_ref()
            .and_then(|p| p.expires_at)
            .is_some_and(|t| t <= now)
    }

    #[must_use]
    pub fn with_qos(mut self, qos: Qos) -> Self {
        self.qos = qos;
        self
    }

    #[must_use]
    pub fn with_retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }
}
