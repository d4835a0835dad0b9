//! `GGShadowService` on the core: shadow requests arrive from the router (devices and
//! functions publishing to `$aws/things/THING/shadow/{get,update,delete}` along their
//! subscriptions) and from the Lambda IPC (the SDK's `get_thing_shadow`,
//! `update_thing_shadow`, `delete_thing_shadow`); every reply leaves from `GGShadowService`
//! through the router, so it reaches whoever the group's subscriptions say.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use coupler_model::{Entity, TopicName};
use coupler_router::{Message, Router};

use crate::shadow::Shadows;

/// The local shadow service.
#[derive(Debug)]
pub struct ShadowService {
    shadows: Arc<Shadows>,
    router: Arc<Router>,
}

impl ShadowService {
    pub fn new(shadows: Shadows, router: Arc<Router>) -> Self {
        Self {
            shadows: Arc::new(shadows),
            router,
        }
    }

    /// Apply the request on `topic`, route every reply, and return the answer (the
    /// `accepted` or `rejected` document); `None` when `topic` is no shadow request.
    pub async fn request(&self, topic: &str, payload: &[u8]) -> Option<Vec<u8>> {
        let (thing, op) = Shadows::request_topic(topic)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let shadows = self.shadows.clone();
        let payload = payload.to_vec();
        // The store syncs each write to disk: off the async workers.
        let replies =
            tokio::task::spawn_blocking(move || shadows.handle(&thing, op, &payload, now))
                .await
                .ok()?;
        let mut answer = None;
        for r in replies {
            if answer.is_none()
                && (r.topic.ends_with("/accepted") || r.topic.ends_with("/rejected"))
            {
                answer = Some(r.payload.clone());
            }
            match TopicName::parse(&r.topic) {
                Ok(t) => {
                    self.router
                        .route(Message::new(Entity::ShadowService, t, r.payload))
                        .await;
                }
                // A thing name that makes the reply topic invalid was refused as a request
                // topic already; nothing to route.
                Err(e) => tracing::warn!(topic = %r.topic, error = %e, "shadow reply not routed"),
            }
        }
        answer
    }

    /// Serve the requests the router delivers, for as long as the core runs.
    pub async fn run(self: Arc<Self>) {
        let inbox = self.router.inbox(&Entity::ShadowService);
        let _attached = inbox.attach();
        loop {
            let msg = inbox.recv().await;
            if self
                .request(msg.topic.as_str(), &msg.payload)
                .await
                .is_none()
            {
                tracing::debug!(topic = %msg.topic, source = %msg.source, "not a shadow request; ignored");
            }
        }
    }

    /// Forget every shadow (a reset deployment).
    pub fn clear(&self) {
        if let Err(e) = self.shadows.clear() {
            tracing::error!(error = %e, "cannot remove the local shadows");
        }
    }
}
