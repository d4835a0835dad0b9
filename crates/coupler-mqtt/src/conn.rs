//! One client connection: CONNECT and authentication, then the session loop that moves
//! packets from the client into the router and messages from the device's inbox to the
//! client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use coupler_model::{Entity, TopicFilter, TopicName};
use coupler_router::{Inbox, Message, Qos, RouteReport};
use rmqtt_codec::MqttPacket;
use rmqtt_codec::types::{Publish, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, CloseReason, bump};
use crate::packet::{
    AckReason, Connect, DisconnectReason, FrameError, Framer, Inbound, Proto, Refusal,
    ServerLimits, SubResult, Will,
};
use crate::session::{Outgoing, Session, Stage, Subscription};

/// Who is at the other end, as far as the transport can tell.
#[derive(Debug, Clone)]
pub enum Peer {
    /// Plain TCP: only the client id identifies the device.
    Plain,
    /// TLS with a verified client certificate.
    Tls {
        /// SHA-256 of the certificate's DER, lower-case hex (an AWS IoT certificate id).
        certificate_id: String,
        /// The subject's common name: a thing name for certificates the group CA issued.
        common_name: Option<String>,
    },
}

/// How a connection ends: the reason counted, and the MQTT 5 DISCONNECT sent, if any.
#[derive(Debug, Clone, Copy)]
struct End {
    reason: CloseReason,
    tell: Option<DisconnectReason>,
    /// Why, for the log line.
    detail: &'static str,
}

impl End {
    fn quiet(reason: CloseReason, detail: &'static str) -> Self {
        Self {
            reason,
            tell: None,
            detail,
        }
    }

    fn tell(reason: CloseReason, tell: DisconnectReason, detail: &'static str) -> Self {
        Self {
            reason,
            tell: Some(tell),
            detail,
        }
    }
}

impl From<FrameError> for End {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Malformed(rmqtt_codec::error::DecodeError::MaxSizeExceeded { .. }) => {
                End::tell(
                    CloseReason::PacketTooLarge,
                    DisconnectReason::PacketTooLarge,
                    "packet larger than the maximum packet size",
                )
            }
            FrameError::Malformed(_) => End::quiet(CloseReason::Malformed, "malformed packet"),
            FrameError::NotConnect => {
                End::quiet(CloseReason::ProtocolError, "first packet is not CONNECT")
            }
        }
    }
}

fn to_codec(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
        Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn from_codec(q: QoS) -> Qos {
    match q {
        QoS::AtMostOnce => Qos::AtMostOnce,
        QoS::AtLeastOnce => Qos::AtLeastOnce,
        QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

/// Most messages moved from the inbox before the next flush, so that a busy inbox cannot
/// starve reading from the client.
const BATCH: usize = 64;

struct Conn<S> {
    broker: Arc<Broker>,
    io: S,
    addr: SocketAddr,
    rbuf: BytesMut,
    wbuf: BytesMut,
    framer: Framer,
    proto: Proto,
}

/// Serve one accepted connection until it ends.
pub async fn run<S>(
    broker: Arc<Broker>,
    io: S,
    peer: Peer,
    addr: SocketAddr,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        framer: Framer::new(broker.config.max_packet()),
        broker,
        io,
        addr,
        rbuf: BytesMut::with_capacity(4096),
        wbuf: BytesMut::with_capacity(4096),
        proto: Proto::V3,
    };
    let (client, end) = conn.start(&peer, &shutdown).await;
    if let Some(tell) = end.tell
        && let Some(p) = conn.proto.disconnect(tell)
    {
        conn.send(p);
        let _ = conn.flush().await;
    }
    let _ = conn.io.shutdown().await;
    let stats = &conn.broker.stats;
    stats.closed(end.reason);
    let client = client.as_deref().unwrap_or("-");
    if end.reason.is_fault() {
        tracing::warn!(peer = %conn.addr, client, reason = end.reason.as_str(), detail = end.detail, "MQTT connection closed");
    } else {
        tracing::debug!(peer = %conn.addr, client, reason = end.reason.as_str(), "MQTT connection closed");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Append a packet to the write buffer. False if it could not be encoded (a PUBLISH
    /// larger than the client's maximum packet size).
    fn send(&mut self, p: MqttPacket) -> bool {
        self.framer.encode(p, &mut self.wbuf).is_ok()
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.broker.config.write_timeout, write).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            Ok(Err(_)) => Err(End::quiet(CloseReason::Io, "write failed")),
            Err(_) => Err(End::quiet(
                CloseReason::WriteStalled,
                "the client stopped reading",
            )),
        }
    }

    /// Read more bytes; `Ok(false)` at end of stream.
    async fn fill(&mut self) -> Result<bool, End> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(4096);
        }
        match self.io.read_buf(&mut self.rbuf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(_) => Err(End::quiet(CloseReason::Io, "read failed")),
        }
    }

    async fn read_connect(&mut self) -> Result<Box<Connect>, End> {
        loop {
            if let Some(p) = self.framer.decode(&mut self.rbuf)? {
                self.proto = self.framer.proto().unwrap_or(Proto::V3);
                return match p {
                    Inbound::Connect(c) => Ok(c),
                    _ => Err(End::quiet(
                        CloseReason::ProtocolError,
                        "first packet is not CONNECT",
                    )),
                };
            }
            if !self.fill().await? {
                return Err(End::quiet(CloseReason::ClientGone, "closed before CONNECT"));
            }
        }
    }

    /// CONNECT, authentication and the session; returns the client id, if one was read.
    async fn start(
        &mut self,
        peer: &Peer,
        shutdown: &CancellationToken,
    ) -> (Option<Arc<str>>, End) {
        let timeout = self.broker.config.connect_timeout;
        let connect = match tokio::time::timeout(timeout, self.read_connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(end)) => return (None, end),
            Err(_) => {
                return (
                    None,
                    End::quiet(CloseReason::ConnectTimeout, "no CONNECT in time"),
                );
            }
        };
        let client: Arc<str> = Arc::from(&*connect.client_id);
        let verdict = if connect.auth_method.is_some() {
            Err((
                Refusal::BadAuthenticationMethod,
                "enhanced authentication is not supported",
            ))
        } else {
            self.authenticate(peer, &client)
        };
        if let Err((why, text)) = verdict {
            let p = self.proto.connack_refused(why, text);
            self.send(p);
            let _ = self.flush().await;
            return (Some(client), End::quiet(CloseReason::Refused, text));
        }
        let entity = Entity::device(&client);
        let Some(attached) = self
            .broker
            .attach(&client, &entity, connect.clean_start)
            .await
        else {
            let p = self
                .proto
                .connack_refused(Refusal::ServerUnavailable, "the session is busy");
            self.send(p);
            let _ = self.flush().await;
            return (
                Some(client),
                End::quiet(CloseReason::Refused, "session busy"),
            );
        };
        if let Some(max) = connect.max_packet_size {
            self.framer.set_max_out(max);
        }
        let limits = ServerLimits {
            receive_max: self.broker.config.receive_max,
            max_packet_size: self.broker.config.max_packet(),
        };
        let p = self.proto.connack_ok(attached.present, limits);
        self.send(p);
        let conn_id = attached.conn_id;
        let quota = connect
            .receive_max
            .unwrap_or(u16::MAX)
            .min(self.broker.config.max_inflight)
            .max(1) as usize;
        let inbox = self.broker.router.inbox(&entity);
        let mut live = Live {
            _attached: inbox.attach(),
            inbox,
            entity: entity.clone(),
            session: attached.session,
            kicked: attached.kicked,
            quota,
            keep_alive: connect.keep_alive,
            expiry_secs: connect.session_expiry_secs,
            pending: Vec::new(),
            will_on_close: true,
        };
        bump(&self.broker.stats.open);
        tracing::debug!(peer = %self.addr, client = %client, present = attached.present, "MQTT client connected");
        let end = self.session_loop(&mut live, shutdown).await;
        self.broker
            .stats
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let end = if end.reason == CloseReason::TakenOver && !self.broker.device_known(&client) {
            End::tell(
                CloseReason::RemovedFromGroup,
                DisconnectReason::NotAuthorized,
                "the device left the group",
            )
        } else {
            end
        };
        let expiry = Duration::from_secs(u64::from(live.expiry_secs));
        let Live {
            session,
            will_on_close,
            ..
        } = live;
        drop(session);
        self.broker.detach(&client, &entity, conn_id, Some(expiry));
        if will_on_close && let Some(will) = connect.will {
            publish_will(
                &self.broker,
                client.clone(),
                conn_id,
                entity,
                will,
                live.expiry_secs,
            );
        }
        (Some(client), end)
    }

    fn authenticate(&self, peer: &Peer, client: &str) -> Result<(), (Refusal, &'static str)> {
        if client.is_empty() {
            return Err((
                Refusal::ClientIdInvalid,
                "the client id must be the device's thing name",
            ));
        }
        let devices = self.broker.devices();
        let devices = devices.load();
        if !devices.contains(client) {
            return Err((
                Refusal::NotAuthorized,
                "the client id is not a device of the deployed group",
            ));
        }
        match peer {
            Peer::Plain => Ok(()),
            Peer::Tls {
                certificate_id,
                common_name,
            } => match devices.by_certificate(certificate_id) {
                Some(thing) if &**thing == client => Ok(()),
                Some(_) => Err((
                    Refusal::NotAuthorized,
                    "the certificate belongs to another device",
                )),
                None if common_name.as_deref() == Some(client) => Ok(()),
                None => Err((
                    Refusal::NotAuthorized,
                    "the client id is not the certificate's thing",
                )),
            },
        }
    }

    async fn session_loop(&mut self, live: &mut Live, shutdown: &CancellationToken) -> End {
        if let Err(e) = self.resend(live) {
            return e;
        }
        let mut last_in = Instant::now();
        loop {
            self.pump(live);
            if let Err(e) = self.flush().await {
                return e;
            }
            let room = live.session.outgoing.len() < live.quota;
            // MQTT: one and a half keepalive periods without a packet end the connection.
            let keepalive = Duration::from_millis(u64::from(live.keep_alive) * 1500);
            let inbox = live.inbox.clone();
            tokio::select! {
                biased;
                () = live.kicked.cancelled() => {
                    return End::tell(CloseReason::TakenOver, DisconnectReason::SessionTakenOver, "session taken over");
                }
                () = shutdown.cancelled() => {
                    return End::tell(CloseReason::ServerShutdown, DisconnectReason::ServerShuttingDown, "server shutting down");
                }
                r = self.io.read_buf(&mut self.rbuf) => {
                    match r {
                        Ok(0) => return End::quiet(CloseReason::ClientGone, "closed without DISCONNECT"),
                        Ok(_) => {}
                        Err(_) => return End::quiet(CloseReason::Io, "read failed"),
                    }
                    last_in = Instant::now();
                    loop {
                        let p = match self.framer.decode(&mut self.rbuf) {
                            Ok(Some(p)) => p,
                            Ok(None) => break,
                            Err(e) => return e.into(),
                        };
                        if let Some(end) = self.handle(live, p).await {
                            return end;
                        }
                    }
                    if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                        self.rbuf.reserve(4096);
                    }
                }
                msg = inbox.recv(), if room => self.deliver(live, msg, false),
                () = tokio::time::sleep_until(last_in + keepalive), if live.keep_alive > 0 => {
                    return End::tell(CloseReason::KeepAliveTimeout, DisconnectReason::KeepAliveTimeout, "keepalive timeout");
                }
            }
        }
    }

    /// Resend what a resumed session left unacknowledged, in its original order.
    fn resend(&mut self, live: &mut Live) -> Result<(), End> {
        let outgoing: Vec<Outgoing> = live.session.outgoing.iter().cloned().collect();
        let now = std::time::Instant::now();
        for o in outgoing {
            let p = match o.stage {
                Stage::Published => {
                    let publish =
                        self.publish_of(&o.msg, o.qos, o.retain, Some(o.packet_id), true, now);
                    self.proto.publish(publish)
                }
                Stage::Released => self.proto.pubrel(o.packet_id),
            };
            self.send(p);
        }
        Ok(())
    }

    /// The PUBLISH that carries `msg` to this client.
    fn publish_of(
        &self,
        msg: &Message,
        qos: QoS,
        retain: bool,
        packet_id: Option<std::num::NonZeroU16>,
        dup: bool,
        now: std::time::Instant,
    ) -> Publish {
        Publish {
            dup,
            retain,
            qos,
            topic: ByteString::from(msg.topic.as_str()),
            packet_id,
            payload: msg.payload.clone(),
            properties: match (&msg.properties, self.proto) {
                (Some(p), Proto::V5) => Some(crate::packet::properties_out(p, now)),
                _ => None,
            },
        }
    }

    /// Move waiting messages to the write buffer, within the in-flight quota.
    fn pump(&mut self, live: &mut Live) {
        let mut moved = 0;
        while moved < BATCH && live.session.outgoing.len() < live.quota {
            let (msg, retained) = if let Some(m) = live.pending.pop() {
                (m, true)
            } else if let Some(m) = live.inbox.try_recv() {
                (m, false)
            } else {
                break;
            };
            self.deliver(live, msg, retained);
            moved += 1;
        }
    }

    /// Send one message to the client along its session's best matching subscription.
    fn deliver(&mut self, live: &mut Live, msg: Message, retained: bool) {
        let from_self = msg.source == live.entity;
        let Some((granted, keep_retain)) = live.session.best_match(&msg, from_self) else {
            if !retained {
                bump(&self.broker.stats.unsubscribed_drops);
            }
            return;
        };
        let now = std::time::Instant::now();
        if msg.expired(now) {
            bump(&self.broker.stats.expired_drops);
            return;
        }
        let qos = to_codec(msg.qos).less_value(granted);
        let retain = retained || (self.proto == Proto::V5 && keep_retain && msg.retain);
        let packet_id = (qos != QoS::AtMostOnce).then(|| live.session.next_packet_id());
        let p = self
            .proto
            .publish(self.publish_of(&msg, qos, retain, packet_id, false, now));
        if !self.send(p) {
            bump(&self.broker.stats.oversize_drops);
            return;
        }
        bump(&self.broker.stats.publish_out);
        if let Some(packet_id) = packet_id {
            live.session.outgoing.push_back(Outgoing {
                packet_id,
                msg,
                qos,
                retain,
                stage: Stage::Published,
            });
        }
    }

    /// Handle one packet from the client; `Some` ends the connection.
    async fn handle(&mut self, live: &mut Live, p: Inbound) -> Option<End> {
        match p {
            Inbound::Publish(p) => return self.on_publish(live, p).await,
            Inbound::PubAck(id) => {
                let s = &mut live.session;
                if let Some(i) = s
                    .outgoing
                    .iter()
                    .position(|o| o.packet_id == id && o.qos == QoS::AtLeastOnce)
                {
                    s.outgoing.remove(i);
                }
            }
            Inbound::PubRec(id, refused) => {
                let s = &mut live.session;
                if let Some(i) = s.outgoing.iter().position(|o| {
                    o.packet_id == id && o.qos == QoS::ExactlyOnce && o.stage == Stage::Published
                }) {
                    if refused {
                        s.outgoing.remove(i);
                    } else {
                        s.outgoing[i].stage = Stage::Released;
                        let p = self.proto.pubrel(id);
                        self.send(p);
                    }
                }
            }
            Inbound::PubComp(id) => {
                let s = &mut live.session;
                if let Some(i) = s
                    .outgoing
                    .iter()
                    .position(|o| o.packet_id == id && o.stage == Stage::Released)
                {
                    s.outgoing.remove(i);
                }
            }
            Inbound::PubRel(id) => {
                let s = &mut live.session;
                let found = s.incoming_qos2.iter().position(|x| *x == id);
                if let Some(i) = found {
                    s.incoming_qos2.swap_remove(i);
                }
                let p = self.proto.pubcomp(id, found.is_some());
                self.send(p);
            }
            Inbound::Subscribe { with_id: true, .. } => {
                // CONNACK said they are not available [MQTT-3.8.2-1].
                return Some(End::tell(
                    CloseReason::ProtocolError,
                    DisconnectReason::SubscriptionIdentifiersNotSupported,
                    "subscription identifier in SUBSCRIBE",
                ));
            }
            Inbound::Subscribe {
                packet_id, filters, ..
            } => {
                let mut results = Vec::with_capacity(filters.len());
                for (raw, opts) in filters {
                    results.push(self.subscribe(live, &raw, opts));
                }
                let p = self.proto.suback(packet_id, &results);
                self.send(p);
            }
            Inbound::Unsubscribe { packet_id, filters } => {
                let existed: Vec<bool> = filters
                    .iter()
                    .map(|f| live.session.unsubscribe(f))
                    .collect();
                let p = self.proto.unsuback(packet_id, &existed);
                self.send(p);
            }
            Inbound::PingReq => {
                let p = self.proto.pingresp();
                self.send(p);
            }
            Inbound::Disconnect {
                with_will,
                session_expiry_secs,
            } => {
                live.will_on_close = with_will;
                if let Some(s) = session_expiry_secs {
                    // MQTT 5: a session that was to end at close cannot be made to last.
                    if live.expiry_secs == 0 && s != 0 {
                        return Some(End::tell(
                            CloseReason::ProtocolError,
                            DisconnectReason::ProtocolError,
                            "session expiry set at DISCONNECT after 0 at CONNECT",
                        ));
                    }
                    live.expiry_secs = s;
                }
                return Some(End::quiet(
                    CloseReason::ClientDisconnect,
                    "client disconnected",
                ));
            }
            Inbound::Connect(_) => {
                return Some(End::tell(
                    CloseReason::ProtocolError,
                    DisconnectReason::ProtocolError,
                    "second CONNECT",
                ));
            }
            Inbound::Unexpected(packet) => {
                // The detail names the packet type a client may not send.
                return Some(End::tell(
                    CloseReason::ProtocolError,
                    DisconnectReason::ProtocolError,
                    packet,
                ));
            }
        }
        None
    }

    fn subscribe(
        &mut self,
        live: &mut Live,
        raw: &str,
        opts: crate::packet::SubOptions,
    ) -> SubResult {
        if raw.starts_with("$share/") {
            return SubResult::SharedNotSupported;
        }
        let Ok(filter) = TopicFilter::parse(raw) else {
            return SubResult::FilterInvalid;
        };
        if !self.broker.router.may_subscribe(&live.entity, &filter) {
            bump(&self.broker.stats.subscribe_refused);
            tracing::info!(client = %live.entity, filter = raw, "MQTT subscription refused: no group subscription delivers on it");
            return SubResult::Refused;
        }
        let known = live
            .session
            .subscriptions
            .iter()
            .any(|s| s.filter.as_str() == raw);
        if !known && live.session.subscriptions.len() >= self.broker.config.max_subscriptions {
            tracing::warn!(client = %live.entity, limit = self.broker.config.max_subscriptions, "MQTT subscription refused: too many in the session");
            return SubResult::QuotaExceeded;
        }
        let qos = opts.qos;
        let is_new = live.session.subscribe(Subscription {
            filter: filter.clone(),
            qos,
            no_local: opts.no_local,
            retain_as_published: opts.retain_as_published,
        });
        if opts.retain_handling == 0 || (opts.retain_handling == 1 && is_new) {
            for m in self.broker.retained_matching(&filter) {
                if self
                    .broker
                    .router
                    .delivers_to(&m.source, &m.topic, &live.entity)
                {
                    live.pending.push(m);
                }
            }
        }
        SubResult::Granted(qos)
    }

    async fn on_publish(&mut self, live: &mut Live, p: Box<Publish>) -> Option<End> {
        if p.payload.len() > self.broker.config.max_payload {
            return Some(End::tell(
                CloseReason::PacketTooLarge,
                DisconnectReason::PacketTooLarge,
                "payload larger than the maximum",
            ));
        }
        if p.properties
            .as_ref()
            .is_some_and(|pr| pr.topic_alias.is_some())
        {
            return Some(End::tell(
                CloseReason::ProtocolError,
                DisconnectReason::TopicAliasInvalid,
                "topic alias used; the server allows none",
            ));
        }
        let Ok(topic) = TopicName::parse(&p.topic) else {
            return Some(End::tell(
                CloseReason::TopicInvalid,
                DisconnectReason::TopicNameInvalid,
                "invalid topic name",
            ));
        };
        bump(&self.broker.stats.publish_in);
        if p.qos == QoS::ExactlyOnce
            && let Some(id) = p.packet_id
        {
            if live.session.incoming_qos2.contains(&id) {
                // A retransmission of a message already routed: acknowledge it again only.
                let ack = self.proto.pubrec(id, AckReason::Success);
                self.send(ack);
                return None;
            }
            if live.session.incoming_qos2.len() >= usize::from(self.broker.config.receive_max) {
                return Some(End::tell(
                    CloseReason::ProtocolError,
                    DisconnectReason::ReceiveMaximumExceeded,
                    "more QoS 2 messages in flight than the receive maximum",
                ));
            }
        }
        let properties = p.properties.as_ref().and_then(|pp| {
            crate::packet::properties_in(
                &pp.user_properties,
                pp.content_type.as_ref(),
                pp.response_topic.as_ref(),
                pp.correlation_data.as_ref(),
                pp.is_utf8_payload,
                pp.message_expiry_interval,
            )
        });
        let msg = Message::new(live.entity.clone(), topic, p.payload)
            .with_qos(from_codec(p.qos))
            .with_retain(p.retain)
            .with_properties(properties);
        let report = publish(&self.broker, msg).await;
        let reason = if report.matched > 0 {
            AckReason::Success
        } else if self.broker.router.has_source(&live.entity) {
            AckReason::NoMatchingSubscribers
        } else {
            AckReason::NotAuthorized
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let ack = self.proto.puback(id, reason);
                self.send(ack);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                // A refusal (0x87) ends the exchange at PUBREC; 0x10 is a success code.
                if reason != AckReason::NotAuthorized || self.proto == Proto::V3 {
                    live.session.incoming_qos2.push(id);
                }
                let ack = self.proto.pubrec(id, reason);
                self.send(ack);
            }
            _ => {}
        }
        None
    }
}

/// A connection's session state while it runs.
struct Live {
    /// Senders wait for this connection rather than drop, while it lives.
    _attached: coupler_router::Attached,
    entity: Entity,
    inbox: Arc<Inbox>,
    session: tokio::sync::OwnedMutexGuard<Session>,
    kicked: CancellationToken,
    /// QoS 1/2 messages in flight to the client, at most.
    quota: usize,
    keep_alive: u16,
    expiry_secs: u32,
    /// Retained messages matched by a new subscription, waiting for room in the quota.
    pending: Vec<Message>,
    will_on_close: bool,
}

/// Route a device's message, and keep it as the topic's retained message if it was
/// published with retain and the group routes it somewhere.
async fn publish(broker: &Broker, msg: Message) -> RouteReport {
    let retained = msg.retain.then(|| msg.clone());
    let report = broker.router.route(msg).await;
    if let Some(m) = retained
        && report.matched > 0
    {
        broker.retain(&m);
    }
    report
}

/// Publish a will: now, or after its delay unless the session was resumed meanwhile.
fn publish_will(
    broker: &Arc<Broker>,
    client: Arc<str>,
    conn_id: u64,
    entity: Entity,
    will: Will,
    expiry: u32,
) {
    let Ok(topic) = TopicName::parse(&will.topic) else {
        tracing::warn!(client = %client, topic = %will.topic, "will message not published: invalid topic");
        return;
    };
    let msg = Message::new(entity, topic, will.payload)
        .with_qos(from_codec(will.qos))
        .with_retain(will.retain)
        .with_properties(will.properties);
    let delay = Duration::from_secs(u64::from(will.delay_secs.min(expiry)));
    let broker = Arc::clone(broker);
    tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            if broker.resumed_since(&client, conn_id) {
                return;
            }
        }
        let report = publish(&broker, msg).await;
        tracing::debug!(client = %client, delivered = report.delivered, "will message published");
    });
}
