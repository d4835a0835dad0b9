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
        }
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
