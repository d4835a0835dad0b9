//! `GGShadowService` on the core: shadow requests arrive from the router (devices and
//! functions publishing to `$aws/things/THING/shadow/{get,update,delete}` along their
//! subscriptions) and from the Lambda IPC (the SDK's `get_thing_shadow`,
//! `update_thing_shadow`, `delete_thing_shadow`); every reply leaves from `GGShadowService`
//! through the router, so it reaches whoever the group's subscriptions say.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use coupler_model::{Entity, TopicName};
use coupler_router::{Message, Router};

use crate::shadow::{Op, Shadows};

/// Told of every accepted local update and delete, to mirror synced shadows (`SyncShadow`) in
/// the cloud.
pub trait ShadowSync: Send + Sync {
    /// `request` (the update document, or the delete request) was accepted for `thing`.
    fn local_change(&self, thing: &str, op: Op, request: &[u8]);
}

/// The local shadow service.
pub struct ShadowService {
    shadows: Arc<Shadows>,
    router: Arc<Router>,
    sync: OnceLock<Arc<dyn ShadowSync>>,
}

impl std::fmt::Debug for ShadowService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowService")
            .field("shadows", &self.shadows)
            .finish_non_exhaustive()
    }
}

impl ShadowService {
    pub fn new(shadows: Shadows, router: Arc<Router>) -> Self {
        Self {
            shadows: Arc::new(shadows),
            router,
            sync: OnceLock::new(),
        }
    }

    /// Send accepted local changes to `sync` from now on (set once).
    pub fn set_sync(&self, sync: Arc<dyn ShadowSync>) {
        let _ = self.sync.set(sync);
    }

    /// Apply the request on `topic`, route every reply, and return the answer (the
    /// `accepted` or `rejected` document); `None` when `topic` is no shadow request.
    pub async fn request(&self, topic: &str, payload: &[u8]) -> Option<Vec<u8>> {
        self.apply(topic, payload, true).await
    }

    /// [`Self::request`]; `to_cloud`: tell the [`ShadowSync`] if it is accepted.
    async fn apply(&self, topic: &str, payload: &[u8], to_cloud: bool) -> Option<Vec<u8>> {
        let (thing, op) = Shadows::request_topic(topic)?;
        let shadows = self.shadows.clone();
        let request = payload.to_vec();
        let replies = {
            let thing = thing.clone();
            // The store syncs each write to disk: off the async workers.
            tokio::task::spawn_blocking(move || shadows.handle(&thing, op, &request, now()))
                .await
                .ok()?
        };
        if to_cloud
            && op != Op::Get
            && let Some(sync) = self.sync.get()
            && replies.iter().any(|r| r.topic.ends_with("/accepted"))
        {
            sync.local_change(&thing, op, payload);
        }
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

    /// Mirror the cloud's shadow of `thing` from an `update/documents` message (`current`):
    /// the keys of `desired` and `reported` that differ locally are updated, those gone in
    /// the cloud removed; the local replies are routed as for any update, and nothing goes
    /// back to the cloud. Nothing happens when the local shadow already holds that state
    /// (the echo of a local change).
    pub async fn apply_from_cloud(&self, thing: &str, documents: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(documents) else {
            tracing::warn!(%thing, "shadow documents from the cloud are not JSON; ignored");
            return;
        };
        let cloud = &doc["current"]["state"];
        if !cloud.is_object() {
            tracing::warn!(%thing, "shadow documents from the cloud without current.state; ignored");
            return;
        }
        let shadows = self.shadows.clone();
        let name = thing.to_owned();
        let local = tokio::task::spawn_blocking(move || {
            shadows
                .handle(&name, Op::Get, b"", now())
                .into_iter()
                .find(|r| r.topic.ends_with("/get/accepted"))
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
        })
        .await
        .ok()
        .flatten();
        let local_state = local.as_ref().map(|l| &l["state"]);
        let mut state = serde_json::Map::new();
        for section in ["desired", "reported"] {
            let want = cloud[section].as_object();
            let have = local_state.and_then(|l| l[section].as_object());
            let mut changes = serde_json::Map::new();
            for (k, v) in want.into_iter().flatten() {
                if have.and_then(|h| h.get(k)) != Some(v) {
                    changes.insert(k.clone(), v.clone());
                }
            }
            for k in have.into_iter().flatten().map(|(k, _)| k) {
                if want.is_none_or(|w| !w.contains_key(k)) {
                    changes.insert(k.clone(), serde_json::Value::Null);
                }
            }
            if !changes.is_empty() {
                state.insert(section.to_owned(), changes.into());
            }
        }
        if state.is_empty() {
            return;
        }
        let update = serde_json::json!({ "state": state }).to_string();
        let topic = format!("$aws/things/{thing}/shadow/update");
        if self.apply(&topic, update.as_bytes(), false).await.is_none() {
            tracing::warn!(%thing, "shadow from the cloud not applied");
        }
    }

    /// Forget every shadow (a reset deployment).
    pub fn clear(&self) {
        if let Err(e) = self.shadows.clear() {
            tracing::error!(error = %e, "cannot remove the local shadows");
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
