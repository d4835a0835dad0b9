//! What an MQTT session keeps between packets and, when persistent, between connections:
//! subscriptions and the QoS 1/2 exchanges still open in either direction.
//!
//! Messages waiting for the device are not here: they wait in the device's router inbox,
//! which is bounded and outlives connections.

use std::collections::VecDeque;
use std::num::NonZeroU16;

use coupler_model::TopicFilter;
use coupler_router::Message;
use rmqtt_codec::types::QoS;

#[derive(Debug, Clone)]
pub struct Subscription {
    pub filter: TopicFilter,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
}

/// Where an outgoing QoS 1/2 message is in its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent; waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub packet_id: NonZeroU16,
    pub msg: Message,
    pub qos: QoS,
    pub retain: bool,
    pub stage: Stage,
}

#[derive(Debug, Default)]
pub struct Session {
    /// False until a connection first attaches: "session present" needs a real session.
    pub exists: bool,
    pub subscriptions: Vec<Subscription>,
    /// In send order, so a reconnect resends in the original order.
    pub outgoing: VecDeque<Outgoing>,
    /// QoS 2 packet ids received and acknowledged with PUBREC, awaiting PUBREL.
    pub incoming_qos2: Vec<NonZeroU16>,
    last_packet_id: u16,
}

impl Session {
    /// A packet id not in use by an outgoing exchange.
    pub fn next_packet_id(&mut self) -> NonZeroU16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if let Some(id) = NonZeroU16::new(self.last_packet_id)
                && !self.outgoing.iter().any(|o| o.packet_id == id)
            {
                return id;
            }
        }
    }

    /// The best QoS any subscription grants for `msg`, and whether that subscription keeps
    /// the retain flag; `None` if no subscription matches.
    pub fn best_match(&self, msg: &Message, from_self: bool) -> Option<(QoS, bool)> {
        let mut best: Option<(QoS, bool)> = None;
        for s in &self.subscriptions {
            if (s.no_local && from_self) || !s.filter.matches(&msg.topic) {
                continue;
            }
            if best.is_none_or(|(q, _)| s.qos > q) {
                best = Some((s.qos, s.retain_as_published));
            }
        }
        best
    }

    /// Replace or add a subscription; returns whether the filter is new to the session.
    pub fn subscribe(&mut self, sub: Subscription) -> bool {
        match self
            .subscriptions
            .iter_mut()
            .find(|s| s.filter.as_str() == sub.filter.as_str())
        {
            Some(s) => {
                *s = sub;
                false
            }
            None => {
                self.subscriptions.push(sub);
                true
            }
        }
    }

    /// Remove a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        let before = self.subscriptions.len();
        self.subscriptions.retain(|s| s.filter.as_str() != filter);
        before != self.subscriptions.len()
    }
}
