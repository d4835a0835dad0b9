//! One view of MQTT 3.1.1 and 5.0 packets over `rmqtt-codec`: what a client sends is read
//! into [`Inbound`], and what the server answers is built by [`Proto`] for the client's
//! protocol version, so the session logic is written once.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use coupler_router::Properties;
use rmqtt_codec::error::{DecodeError, EncodeError};
use rmqtt_codec::types::{Publish, QoS};
use rmqtt_codec::version::{ProtocolVersion, VersionCodec};
use rmqtt_codec::{MqttCodec, MqttPacket, v3, v5};
use tokio_util::codec::{Decoder, Encoder};

/// The protocol a connection speaks, known once its CONNECT has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    V3,
    V5,
}

/// A will message from CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5's will delay interval.
    pub delay_secs: u32,
    pub properties: Option<Arc<Properties>>,
}

/// The parts of CONNECT the session needs.
#[derive(Debug, Clone)]
pub struct Connect {
    pub client_id: ByteString,
    pub clean_start: bool,
    pub keep_alive: u16,
    /// MQTT 5's session expiry; for 3.1.1, 0 for a clean session and "never" otherwise.
    pub session_expiry_secs: u32,
    /// How many QoS 1/2 messages the client takes unacknowledged (MQTT 5).
    pub receive_max: Option<u16>,
    /// The largest packet the client accepts (MQTT 5).
    pub max_packet_size: Option<u32>,
    pub will: Option<Will>,
    /// MQTT 5 enhanced authentication, which this server does not offer.
    pub auth_method: Option<ByteString>,
}

/// Subscription options (3.1.1 has only the QoS).
#[derive(Debug, Clone, Copy)]
pub struct SubOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained messages; 1: only for a new subscription; 2: never.
    pub retain_handling: u8,
}

/// A packet from a client, whatever its version.
#[derive(Debug)]
pub enum Inbound {
    Connect(Box<Connect>),
    Publish(Box<Publish>),
    PubAck(NonZeroU16),
    /// PUBREC, and whether its reason code says the message was refused.
    PubRec(NonZeroU16, bool),
    PubRel(NonZeroU16),
    PubComp(NonZeroU16),
    Subscribe {
        packet_id: NonZeroU16,
        filters: Vec<(ByteString, SubOptions)>,
        /// MQTT 5 subscription identifier, which this server does not offer.
        with_id: bool,
    },
    Unsubscribe {
        packet_id: NonZeroU16,
        filters: Vec<ByteString>,
    },
    PingReq,
    Disconnect {
        /// MQTT 5's "disconnect with will message" (0x04).
        with_will: bool,
        session_expiry_secs: Option<u32>,
    },
    /// A packet only a server sends, or AUTH, which this server does not support.
    Unexpected(&'static str),
}

/// A message's MQTT 5 properties as the router carries them; `None` when there are none.
pub fn properties_in(
    user: &v5::UserProperties,
    content_type: Option<&ByteString>,
    response_topic: Option<&ByteString>,
    correlation_data: Option<&Bytes>,
    payload_utf8: bool,
    expiry: Option<std::num::NonZeroU32>,
) -> Option<Arc<Properties>> {
    let p = Properties {
        user: user
            .iter()
            .map(|(k, v)| (Arc::from(&**k), Arc::from(&**v)))
            .collect(),
        content_type: content_type.map(|c| Arc::from(&**c)),
        response_topic: response_topic.map(|t| Arc::from(&**t)),
        correlation_data: correlation_data.cloned(),
        payload_utf8,
        expires_at: expiry.map(|s| Instant::now() + Duration::from_secs(u64::from(s.get()))),
    };
    (p != Properties::default()).then(|| Arc::new(p))
}

/// The MQTT 5 PUBLISH properties of a message on its way out, with the expiry interval
/// that is left.
pub fn properties_out(p: &Properties, now: Instant) -> v5::PublishProperties {
    v5::PublishProperties {
        user_properties: p
            .user
            .iter()
            .map(|(k, v)| (ByteString::from(&**k), ByteString::from(&**v)))
            .collect(),
        content_type: p.content_type.as_deref().map(ByteString::from),
        response_topic: p.response_topic.as_deref().map(ByteString::from),
        correlation_data: p.correlation_data.clone(),
        is_utf8_payload: p.payload_utf8,
        message_expiry_interval: p.expires_at.and_then(|t| {
            let left = t.saturating_duration_since(now);
            // Whole seconds left, never more than the message has; at least 1, since an
            // absent interval would mean "never expires".
            std::num::NonZeroU32::new(u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX))
        }),
        ..v5::PublishProperties::default()
    }
}

/// Why the server refuses or ends a connection, with the MQTT 5 reason code it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0x85 / 3.1.1: identifier rejected.
    ClientIdInvalid,
    /// 0x87 / 3.1.1: not authorised.
    NotAuthorized,
    /// 0x88 / 3.1.1: server unavailable.
    ServerUnavailable,
    /// 0x8C / 3.1.1: not authorised.
    BadAuthenticationMethod,
}

/// Reasons the server gives in MQTT 5 DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ProtocolError,
    NotAuthorized,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicNameInvalid,
    ReceiveMaximumExceeded,
    PacketTooLarge,
    TopicAliasInvalid,
    ServerShuttingDown,
    SubscriptionIdentifiersNotSupported,
}

/// Reason of a PUBACK/PUBREC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckReason {
    Success,
    /// 0x10: accepted, but no subscription delivers it anywhere.
    NoMatchingSubscribers,
    /// 0x87: the device may not publish on this topic at all.
    NotAuthorized,
}

/// Result of one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubResult {
    Granted(QoS),
    /// Not authorised by the group's subscriptions: 0x80.
    Refused,
    /// 0x8F: the filter is malformed.
    FilterInvalid,
    /// 0x9E: `$share/...` is not supported.
    SharedNotSupported,
    /// 0x97: too many subscriptions in the session.
    QuotaExceeded,
}

/// Frames a connection: detects the version from CONNECT, then decodes and encodes with the
/// codec of that version.
#[derive(Debug)]
pub struct Framer {
    codec: MqttCodec,
    /// Largest remaining length accepted from the client.
    max_in: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("malformed packet: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the first packet is not CONNECT")]
    NotConnect,
}

impl Framer {
    pub fn new(max_in: u32) -> Self {
        Self {
            codec: MqttCodec::Version(VersionCodec),
            max_in,
        }
    }

    pub fn proto(&self) -> Option<Proto> {
        match self.codec {
            MqttCodec::V3(_) => Some(Proto::V3),
            MqttCodec::V5(_) => Some(Proto::V5),
            MqttCodec::Version(_) => None,
        }
    }

    /// Limit what is sent to the client (its MQTT 5 maximum packet size).
    pub fn set_max_out(&mut self, size: u32) {
        if let MqttCodec::V5(c) = &mut self.codec {
            c.set_max_outbound_size(size);
        }
    }

    /// The next whole packet in `buf`, if there is one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, FrameError> {
        if let MqttCodec::Version(v) = &mut self.codec {
            match v.decode(buf) {
                Ok(Some(ProtocolVersion::MQTT3)) => {
                    self.codec = MqttCodec::V3(v3::Codec::new(self.max_in));
                }
                Ok(Some(ProtocolVersion::MQTT5)) => {
                    self.codec = MqttCodec::V5(v5::Codec::new(self.max_in, 0));
                }
                Ok(None) => return Ok(None),
                Err(DecodeError::UnsupportedPacketType) => return Err(FrameError::NotConnect),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(match self.codec.decode(buf)? {
            None => None,
            Some((MqttPacket::V3(p), _)) => Some(from_v3(p)),
            Some((MqttPacket::V5(p), _)) => Some(from_v5(p)),
            Some((MqttPacket::Version(_), _)) => None,
        })
    }

    /// Append an encoded packet to `out`.
    pub fn encode(&mut self, packet: MqttPacket, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.codec.encode(packet, out)
    }
}

fn from_v3(p: v3::Packet) -> Inbound {
    use v3::Packet as P;
    match p {
        P::Connect(c) => Inbound::Connect(Box::new(Connect {
            client_id: c.client_id,
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            session_expiry_secs: if c.clean_session { 0 } else { u32::MAX },
            receive_max: None,
            max_packet_size: None,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: w.qos,
                retain: w.retain,
                delay_secs: 0,
                properties: None,
            }),
            auth_method: None,
        })),
        P::Publish(p) => Inbound::Publish(p),
        P::PublishAck { packet_id } => Inbound::PubAck(packet_id),
        P::PublishReceived { packet_id } => Inbound::PubRec(packet_id, false),
        P::PublishRelease { packet_id } => Inbound::PubRel(packet_id),
        P::PublishComplete { packet_id } => Inbound::PubComp(packet_id),
        P::Subscribe {
            packet_id,
            topic_filters,
        } => Inbound::Subscribe {
            packet_id,
            with_id: false,
            filters: topic_filters
                .into_iter()
                .map(|(f, qos)| {
                    (
                        f,
                        SubOptions {
                            qos,
                            no_local: false,
                            retain_as_published: false,
                            retain_handling: 0,
                        },
                    )
                })
                .collect(),
        },
        P::Unsubscribe {
            packet_id,
            topic_filters,
        } => Inbound::Unsubscribe {
            packet_id,
            filters: topic_filters,
        },
        P::PingRequest => Inbound::PingReq,
        P::Disconnect => Inbound::Disconnect {
            with_will: false,
            session_expiry_secs: None,
        },
        P::ConnectAck(_) => Inbound::Unexpected("CONNACK"),
        P::SubscribeAck { .. } => Inbound::Unexpected("SUBACK"),
        P::UnsubscribeAck { .. } => Inbound::Unexpected("UNSUBACK"),
        P::PingResponse => Inbound::Unexpected("PINGRESP"),
    }
}

fn from_v5(p: v5::Packet) -> Inbound {
    use v5::Packet as P;
    match p {
        P::Connect(c) => {
            let c = *c;
            Inbound::Connect(Box::new(Connect {
                client_id: c.client_id,
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                session_expiry_secs: c.session_expiry_interval_secs,
                receive_max: c.receive_max.map(NonZeroU16::get),
                max_packet_size: c.max_packet_size.map(std::num::NonZeroU32::get),
                will: c.last_will.map(|w| Will {
                    properties: properties_in(
                        &w.user_properties,
                        w.content_type.as_ref(),
                        w.response_topic.as_ref(),
                        w.correlation_data.as_ref(),
                        w.is_utf8_payload.unwrap_or(false),
                        w.message_expiry_interval,
                    ),
                    topic: w.topic,
                    payload: w.message,
                    qos: w.qos,
                    retain: w.retain,
                    delay_secs: w.will_delay_interval_sec.unwrap_or(0),
                }),
                auth_method: c.auth_method,
            }))
        }
        P::Publish(p) => Inbound::Publish(p),
        P::PublishAck(a) => Inbound::PubAck(a.packet_id),
        P::PublishReceived(a) => Inbound::PubRec(a.packet_id, u8::from(a.reason_code) >= 0x80),
        P::PublishRelease(a) => Inbound::PubRel(a.packet_id),
        P::PublishComplete(a) => Inbound::PubComp(a.packet_id),
        P::Subscribe(s) => Inbound::Subscribe {
            packet_id: s.packet_id,
            with_id: s.id.is_some(),
            filters: s
                .topic_filters
                .into_iter()
                .map(|(f, o)| {
                    (
                        f,
                        SubOptions {
                            qos: o.qos,
                            no_local: o.no_local,
                            retain_as_published: o.retain_as_published,
                            retain_handling: u8::from(o.retain_handling),
                        },
                    )
                })
                .collect(),
        },
        P::Unsubscribe(u) => Inbound::Unsubscribe {
            packet_id: u.packet_id,
            filters: u.topic_filters,
        },
        P::PingRequest => Inbound::PingReq,
        P::Disconnect(d) => Inbound::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry_secs: d.session_expiry_interval_secs,
        },
        P::Auth(_) => Inbound::Unexpected("AUTH"),
        P::ConnectAck(_) => Inbound::Unexpected("CONNACK"),
        P::SubscribeAck(_) => Inbound::Unexpected("SUBACK"),
        P::UnsubscribeAck(_) => Inbound::Unexpected("UNSUBACK"),
        P::PingResponse => Inbound::Unexpected("PINGRESP"),
    }
}

/// What the server advertises in an MQTT 5 CONNACK.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub receive_max: u16,
    pub max_packet_size: u32,
}

impl Proto {
    pub fn connack_ok(self, session_present: bool, limits: ServerLimits) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::ConnectAck(v3::ConnectAck {
                return_code: v3::ConnectAckReason::ConnectionAccepted,
                session_present,
            })),
            Self::V5 => MqttPacket::V5(v5::Packet::ConnectAck(Box::new(v5::ConnectAck {
                session_present,
                reason_code: v5::ConnectAckReason::Success,
                receive_max: NonZeroU16::new(limits.receive_max).unwrap_or(NonZeroU16::MIN),
                max_packet_size: Some(limits.max_packet_size),
                max_qos: QoS::ExactlyOnce,
                retain_available: true,
                wildcard_subscription_available: true,
                subscription_identifiers_available: false,
                shared_subscription_available: false,
                topic_alias_max: 0,
                ..v5::ConnectAck::default()
            }))),
        }
    }

    pub fn connack_refused(self, why: Refusal, text: &str) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::ConnectAck(v3::ConnectAck {
                return_code: match why {
                    Refusal::ClientIdInvalid => v3::ConnectAckReason::IdentifierRejected,
                    Refusal::NotAuthorized | Refusal::BadAuthenticationMethod => {
                        v3::ConnectAckReason::NotAuthorized
                    }
                    Refusal::ServerUnavailable => v3::ConnectAckReason::ServiceUnavailable,
                },
                session_present: false,
            })),
            Self::V5 => MqttPacket::V5(v5::Packet::ConnectAck(Box::new(v5::ConnectAck {
                reason_code: match why {
                    Refusal::ClientIdInvalid => v5::ConnectAckReason::ClientIdentifierNotValid,
                    Refusal::NotAuthorized => v5::ConnectAckReason::NotAuthorized,
                    Refusal::ServerUnavailable => v5::ConnectAckReason::ServerUnavailable,
                    Refusal::BadAuthenticationMethod => {
                        v5::ConnectAckReason::BadAuthenticationMethod
                    }
                },
                reason_string: Some(text.into()),
                ..v5::ConnectAck::default()
            }))),
        }
    }

    pub fn publish(self, publish: Publish) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::Publish(Box::new(publish))),
            Self::V5 => MqttPacket::V5(v5::Packet::Publish(Box::new(publish))),
        }
    }

    fn ack(self, packet_id: NonZeroU16, reason: AckReason) -> v5::PublishAck {
        v5::PublishAck {
            packet_id,
            reason_code: match reason {
                AckReason::Success => v5::PublishAckReason::Success,
                AckReason::NoMatchingSubscribers => v5::PublishAckReason::NoMatchingSubscribers,
                AckReason::NotAuthorized => v5::PublishAckReason::NotAuthorized,
            },
            ..v5::PublishAck::default()
        }
    }

    pub fn puback(self, packet_id: NonZeroU16, reason: AckReason) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::PublishAck { packet_id }),
            Self::V5 => MqttPacket::V5(v5::Packet::PublishAck(self.ack(packet_id, reason))),
        }
    }

    pub fn pubrec(self, packet_id: NonZeroU16, reason: AckReason) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::PublishReceived { packet_id }),
            Self::V5 => MqttPacket::V5(v5::Packet::PublishReceived(self.ack(packet_id, reason))),
        }
    }

    fn ack2(packet_id: NonZeroU16, found: bool) -> v5::PublishAck2 {
        v5::PublishAck2 {
            packet_id,
            reason_code: if found {
                v5::PublishAck2Reason::Success
            } else {
                v5::PublishAck2Reason::PacketIdNotFound
            },
            ..v5::PublishAck2::default()
        }
    }

    pub fn pubrel(self, packet_id: NonZeroU16) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::PublishRelease { packet_id }),
            Self::V5 => MqttPacket::V5(v5::Packet::PublishRelease(Self::ack2(packet_id, true))),
        }
    }

    pub fn pubcomp(self, packet_id: NonZeroU16, found: bool) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::PublishComplete { packet_id }),
            Self::V5 => MqttPacket::V5(v5::Packet::PublishComplete(Self::ack2(packet_id, found))),
        }
    }

    pub fn suback(self, packet_id: NonZeroU16, results: &[SubResult]) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::SubscribeAck {
                packet_id,
                status: results
                    .iter()
                    .map(|r| match r {
                        SubResult::Granted(q) => v3::SubscribeReturnCode::Success(*q),
                        _ => v3::SubscribeReturnCode::Failure,
                    })
                    .collect(),
            }),
            Self::V5 => {
                let refused = results.contains(&SubResult::Refused);
                MqttPacket::V5(v5::Packet::SubscribeAck(v5::SubscribeAck {
                    packet_id,
                    properties: Vec::new(),
                    reason_string: refused
                        .then(|| "not authorised by the group's subscriptions".into()),
                    status: results
                        .iter()
                        .map(|r| match r {
                            SubResult::Granted(QoS::AtMostOnce) => {
                                v5::SubscribeAckReason::GrantedQos0
                            }
                            SubResult::Granted(QoS::AtLeastOnce) => {
                                v5::SubscribeAckReason::GrantedQos1
                            }
                            SubResult::Granted(QoS::ExactlyOnce) => {
                                v5::SubscribeAckReason::GrantedQos2
                            }
                            SubResult::Refused => v5::SubscribeAckReason::UnspecifiedError,
                            SubResult::FilterInvalid => v5::SubscribeAckReason::TopicFilterInvalid,
                            SubResult::SharedNotSupported => {
                                v5::SubscribeAckReason::SharedSubscriptionNotSupported
                            }
                            SubResult::QuotaExceeded => v5::SubscribeAckReason::QuotaExceeded,
                        })
                        .collect(),
                }))
            }
        }
    }

    /// UNSUBACK; `existed` says, per filter, whether the session had it (MQTT 5 reports it).
    pub fn unsuback(self, packet_id: NonZeroU16, existed: &[bool]) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::UnsubscribeAck { packet_id }),
            Self::V5 => MqttPacket::V5(v5::Packet::UnsubscribeAck(v5::UnsubscribeAck {
                packet_id,
                properties: Vec::new(),
                reason_string: None,
                status: existed
                    .iter()
                    .map(|e| {
                        if *e {
                            v5::UnsubscribeAckReason::Success
                        } else {
                            v5::UnsubscribeAckReason::NoSubscriptionExisted
                        }
                    })
                    .collect(),
            })),
        }
    }

    pub fn pingresp(self) -> MqttPacket {
        match self {
            Self::V3 => MqttPacket::V3(v3::Packet::PingResponse),
            Self::V5 => MqttPacket::V5(v5::Packet::PingResponse),
        }
    }

    /// The server's DISCONNECT; MQTT 3.1.1 has none (the server just closes).
    pub fn disconnect(self, reason: DisconnectReason) -> Option<MqttPacket> {
        use v5::DisconnectReasonCode as C;
        let code = match reason {
            DisconnectReason::ProtocolError => C::ProtocolError,
            DisconnectReason::NotAuthorized => C::NotAuthorized,
            DisconnectReason::KeepAliveTimeout => C::KeepAliveTimeout,
            DisconnectReason::SessionTakenOver => C::SessionTakenOver,
            DisconnectReason::TopicNameInvalid => C::TopicNameInvalid,
            DisconnectReason::ReceiveMaximumExceeded => C::ReceiveMaximumExceeded,
            DisconnectReason::PacketTooLarge => C::PacketTooLarge,
            DisconnectReason::TopicAliasInvalid => C::TopicAliasInvalid,
            DisconnectReason::ServerShuttingDown => C::ServerShuttingDown,
            DisconnectReason::SubscriptionIdentifiersNotSupported => {
                C::SubscriptionIdentifiersNotSupported
            }
        };
        match self {
            Self::V3 => None,
            Self::V5 => Some(MqttPacket::V5(v5::Packet::Disconnect(v5::Disconnect {
                reason_code: code,
                ..v5::Disconnect::default()
            }))),
        }
    }
}

/// Feed arbitrary bytes to a fresh framer, packet after packet, as a connection would.
/// For the fuzz target and the no-panic property test.
#[doc(hidden)]
pub fn decode_all(data: &[u8], max_in: u32) -> usize {
    let mut framer = Framer::new(max_in);
    let mut buf = BytesMut::from(data);
    let mut n = 0;
    while let Ok(Some(_)) = framer.decode(&mut buf) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn connect(proto: Proto) -> BytesMut {
        let mut out = BytesMut::new();
        match proto {
            Proto::V3 => v3::Codec::new(0)
                .encode(
                    v3::Packet::Connect(Box::new(v3::Connect {
                        client_id: "dev-1".into(),
                        keep_alive: 30,
                        ..v3::Connect::default()
                    })),
                    &mut out,
                )
                .unwrap(),
            Proto::V5 => v5::Codec::new(0, 0)
                .encode(
                    v5::Packet::Connect(Box::new(v5::Connect {
                        client_id: "dev-1".into(),
                        keep_alive: 30,
                        ..v5::Connect::default()
                    })),
                    &mut out,
                )
                .unwrap(),
        }
        out
    }

    /// A framer past CONNECT, for `proto`.
    fn connected(proto: Proto) -> Framer {
        let mut f = Framer::new(1 << 20);
        let mut buf = connect(proto);
        assert!(matches!(f.decode(&mut buf), Ok(Some(Inbound::Connect(_)))));
        assert_eq!(f.proto(), Some(proto));
        f
    }

    fn proto() -> impl Strategy<Value = Proto> {
        prop_oneof![Just(Proto::V3), Just(Proto::V5)]
    }

    fn qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    proptest! {
        /// A PUBLISH the server encodes decodes to the same fields (the server's own framer
        /// reads packets in the client's direction, which carry the same PUBLISH).
        #[test]
        fn publish_round_trips(
            proto in proto(),
            topic in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,6}",
            payload in proptest::collection::vec(any::<u8>(), 0..4096),
            qos in qos(),
            retain in any::<bool>(),
            dup in any::<bool>(),
            id in 1u16..,
        ) {
            let mut framer = connected(proto);
            let publish = Publish {
                dup: dup && qos != QoS::AtMostOnce,
                retain,
                qos,
                topic: topic.clone().into(),
                packet_id: (qos != QoS::AtMostOnce).then(|| NonZeroU16::new(id).unwrap()),
                payload: payload.clone().into(),
                properties: None,
            };
            let mut buf = BytesMut::new();
            framer.encode(proto.publish(publish.clone()), &mut buf).unwrap();
            let Some(Inbound::Publish(p)) = framer.decode(&mut buf).unwrap() else {
                panic!("not a PUBLISH");
            };
            prop_assert_eq!(&*p.topic, topic.as_str());
            prop_assert_eq!(&p.payload[..], &payload[..]);
            prop_assert_eq!(p.qos, qos);
            prop_assert_eq!(p.retain, retain);
            prop_assert_eq!(p.packet_id, publish.packet_id);
            prop_assert!(buf.is_empty());
        }

        /// Acknowledgements keep their packet id, in both versions.
        #[test]
        fn acks_round_trip(proto in proto(), id in 1u16..) {
            let id = NonZeroU16::new(id).unwrap();
            let mut framer = connected(proto);
            let mut buf = BytesMut::new();
            framer.encode(proto.puback(id, AckReason::Success), &mut buf).unwrap();
            framer.encode(proto.pubrec(id, AckReason::Success), &mut buf).unwrap();
            framer.encode(proto.pubrel(id), &mut buf).unwrap();
            framer.encode(proto.pubcomp(id, true), &mut buf).unwrap();
            prop_assert!(matches!(framer.decode(&mut buf).unwrap(), Some(Inbound::PubAck(x)) if x == id));
            prop_assert!(matches!(framer.decode(&mut buf).unwrap(), Some(Inbound::PubRec(x, false)) if x == id));
            prop_assert!(matches!(framer.decode(&mut buf).unwrap(), Some(Inbound::PubRel(x)) if x == id));
            prop_assert!(matches!(framer.decode(&mut buf).unwrap(), Some(Inbound::PubComp(x)) if x == id));
        }

        /// Whatever follows a CONNECT, decoding ends in a packet, a wait for more bytes or an
        /// error: never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            proto in proto(),
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut data = connect(proto).to_vec();
            data.extend_from_slice(&tail);
            decode_all(&data, 1 << 16);
            decode_all(&tail, 1 << 16);
        }

        /// SUBSCRIBE and UNSUBSCRIBE keep their filters and options.
        #[test]
        fn subscribe_round_trips(
            proto in proto(),
            filters in proptest::collection::vec(("[a-z+#/]{1,20}", qos()), 1..5),
            id in 1u16..,
        ) {
            let id = NonZeroU16::new(id).unwrap();
            let mut framer = connected(proto);
            let mut buf = BytesMut::new();
            match proto {
                Proto::V3 => v3::Codec::new(0).encode(v3::Packet::Subscribe {
                    packet_id: id,
                    topic_filters: filters.iter().map(|(f, q)| (f.clone().into(), *q)).collect(),
                }, &mut buf).unwrap(),
                Proto::V5 => v5::Codec::new(0, 0).encode(v5::Packet::Subscribe(v5::Subscribe {
                    packet_id: id,
                    id: None,
                    user_properties: Vec::new(),
                    topic_filters: filters.iter().map(|(f, q)| (f.clone().into(), v5::SubscriptionOptions {
                        qos: *q,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: v5::RetainHandling::AtSubscribeNew,
                    })).collect(),
                }), &mut buf).unwrap(),
            }
            let Some(Inbound::Subscribe { packet_id, filters: got, .. }) = framer.decode(&mut buf).unwrap() else {
                panic!("not a SUBSCRIBE");
            };
            prop_assert_eq!(packet_id, id);
            prop_assert_eq!(got.len(), filters.len());
            for ((f, o), (ef, eq)) in got.iter().zip(&filters) {
                prop_assert_eq!(&**f, ef.as_str());
                prop_assert_eq!(o.qos, *eq);
                if proto == Proto::V5 {
                    prop_assert!(o.retain_as_published);
                    prop_assert_eq!(o.retain_handling, 1);
                }
            }
        }
    }

    #[test]
    fn oversized_packet_is_refused_before_it_is_buffered() {
        // PUBLISH with a remaining length of 2 MiB, of which only the header has arrived.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        let mut small = Framer::new(1024);
        let mut c = connect(Proto::V3);
        small.decode(&mut c).unwrap();
        assert!(matches!(
            small.decode(&mut buf),
            Err(FrameError::Malformed(DecodeError::MaxSizeExceeded { .. }))
        ));
    }

    #[test]
    fn a_first_packet_other_than_connect_is_refused() {
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::from(&[0xC0, 0x00][..]); // PINGREQ
        assert!(matches!(f.decode(&mut buf), Err(FrameError::NotConnect)));
    }
}
