use bytes::Bytes;
use coupler_model::{Entity, TopicName};

/// One message on its way through the group.
///
/// Cloning is cheap and never allocates: the source, topic and payload are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub source: Entity,
    pub topic: TopicName,
    pub payload: Bytes,
}

impl Message {
    pub fn new(source: Entity, topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            source,
            topic,
            payload: payload.into(),
        }
    }
}
