//! The operator's own writes, so that a watch's echo of them triggers no reconcile.
//!
//! Each write (a child applied, a status written) comes back through the controller's watches as
//! a change, and without this the reconcile that made it would run again a moment later, only to
//! find nothing to do. At 25,000 Nodes such a reconcile takes more than a second, and a real change
//! that arrives meanwhile waits for it. The registry holds, for each object written, the
//! resourceVersion its last write left: an event carrying exactly that version is the echo, and
//! anything else (another writer, a deletion, a relist after the echo was seen) still triggers.
//!
//! The echo can arrive before the write's own response has been read. A write whose object is
//! known beforehand (a status, a child that exists) is announced with [`OwnWrites::sending`], and
//! [`OwnWrites::settled_echo`] waits for it to finish before it decides; the mappers of child
//! watches cannot wait, and such an early echo of a child costs one reconcile, as before.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kube::Resource;
use tokio::sync::Notify;

/// How long an event waits for a write in flight of its object; the request's own timeout ends
/// it sooner.
const SETTLE: Duration = Duration::from_secs(10);

/// The resourceVersion the operator's last write left on each object, by the object's uid, until
/// its echo is seen; and the writes in flight.
#[derive(Debug, Default)]
pub struct OwnWrites {
    state: Mutex<State>,
    settled: Notify,
}

#[derive(Debug, Default)]
struct State {
    left: HashMap<String, String>,
    sending: HashMap<String, usize>,
}

/// Which version of which object an event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    uid: String,
    resource_version: String,
}

impl ObjectVersion {
    /// The uid and resourceVersion of `object`, when it has both.
    pub fn of(object: &impl Resource) -> Option<Self> {
        let meta = object.meta();
        Some(Self {
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone()?,
        })
    }
}

/// A write in flight of one object; it ends when this is dropped, after the write was recorded
/// (or failed).
#[derive(Debug)]
pub struct Sending<'a> {
    writes: &'a OwnWrites,
    uid: Option<String>,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let Some(uid) = self.uid.take() else {
            return;
        };
        let mut state = self.writes.held();
        if let Some(count) = state.sending.get_mut(&uid) {
            *count -= 1;
            if *count == 0 {
                state.sending.remove(&uid);
            }
        }
        drop(state);
        self.writes.settled.notify_waiters();
    }
}

impl OwnWrites {
    /// Announces a write of the object with `uid` (none for an object not created yet).
    pub fn sending(&self, uid: Option<&str>) -> Sending<'_> {
        if let Some(uid) = uid {
            *self.held().sending.entry(uid.to_owned()).or_default() += 1;
        }
        Sending {
            writes: self,
            uid: uid.map(str::to_owned),
        }
    }

    /// Records `stored`, an object as one of the operator's writes left it.
    pub fn record(&self, stored: &impl Resource) {
        let meta = stored.meta();
        if let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) {
            self.held().left.insert(uid.clone(), version.clone());
        }
    }

    /// Whether `seen` is the echo of the operator's last write of it. An echo is recognised once:
    /// the same version seen again (a relist) is not the write's echo any more.
    pub fn is_echo(&self, seen: &impl Resource) -> bool {
        ObjectVersion::of(seen).is_some_and(|seen| self.is_echo_of(&seen))
    }

    fn is_echo_of(&self, seen: &ObjectVersion) -> bool {
        let mut state = self.held();
        if state.left.get(&seen.uid) == Some(&seen.resource_version) {
            state.left.remove(&seen.uid);
            true
        } else {
            false
        }
    }

    /// [`Self::is_echo`] of the object version `seen`, once no announced write of that object
    /// is in flight (waiting at most `SETTLE`).
    pub async fn settled_echo(&self, seen: Option<ObjectVersion>) -> bool {
        let Some(seen) = seen else {
            return false;
        };
        let _ = tokio::time::timeout(SETTLE, self.until_sent(&seen.uid)).await;
        self.is_echo_of(&seen)
    }

    async fn until_sent(&self, uid: &str) {
        loop {
            let settled = self.settled.notified();
            let mut settled = std::pin::pin!(settled);
            settled.as_mut().enable();
            if !self.held().sending.contains_key(uid) {
                return;
            }
            settled.await;
        }
    }

    /// How many writes await their echo.
    pub fn len(&self) -> usize {
        self.held().left.len()
    }

    /// Whether no write awaits its echo.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn held(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held left maps that are still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn map(uid: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("bench-topology".to_owned()),
                uid: Some(uid.to_owned()),
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn the_echo_of_a_write_is_recognised_once() {
        let writes = OwnWrites::default();
        writes.record(&map("a", "10"));
        assert!(writes.is_echo(&map("a", "10")));
        // A relist brings the same version again: that reconciles, as every relist does.
        assert!(!writes.is_echo(&map("a", "10")));
        assert!(writes.is_empty());
    }

    #[test]
    fn another_writers_change_and_other_objects_are_not_echoes() {
        let writes = OwnWrites::default();
        writes.record(&map("a", "10"));
        assert!(!writes.is_echo(&map("a", "11")), "someone wrote after us");
        assert!(!writes.is_echo(&map("b", "10")), "another object");
        assert!(!writes.is_echo(&ConfigMap::default()), "no uid or version");
        // The write is still awaited: its echo may come after the other writer's change.
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn only_the_last_write_of_an_object_is_awaited() {
        let writes = OwnWrites::default();
        writes.record(&map("a", "10"));
        writes.record(&map("a", "12"));
        assert!(!writes.is_echo(&map("a", "10")));
        assert!(writes.is_echo(&map("a", "12")));
    }

    #[tokio::test]
    async fn an_echo_that_overtakes_its_writes_response_waits_for_it() {
        let writes = Arc::new(OwnWrites::default());
        let sending = writes.sending(Some("a"));
        let waiting = tokio::spawn({
            let writes = writes.clone();
            async move {
                writes
                    .settled_echo(ObjectVersion::of(&map("a", "10")))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "decided before the write was recorded"
        );
        writes.record(&map("a", "10"));
        drop(sending);
        assert!(waiting.await.expect("the waiting task"));
        // An event of an object with no write in flight is decided at once.
        assert!(!writes.settled_echo(ObjectVersion::of(&map("b", "3"))).await);
    }
}
