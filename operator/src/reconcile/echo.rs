//! The operator's own writes, so that a watch's echo of them triggers no reconcile.
//!
//! Each write (a child applied, a status written) comes back through the controller's watches as
//! a change, and without this the reconcile that made it would run again a moment later, only to
//! find nothing to do. At 25,000 Nodes such a reconcile takes more than a second, and a real change
//! that arrives meanwhile waits for it. The registry holds, for each object written, the
//! resourceVersion its last write left: an event carrying exactly that version is the echo, and
//! anything else (another writer, a deletion, a relist after the echo was seen) still triggers.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Resource;

/// The resourceVersion the operator's last write left on each object, by the object's uid, until
/// its echo is seen.
#[derive(Debug, Default)]
pub struct OwnWrites {
    left: Mutex<HashMap<String, String>>,
}

impl OwnWrites {
    /// Records `stored`, an object as one of the operator's writes left it.
    pub fn record(&self, stored: &impl Resource) {
        let meta = stored.meta();
        if let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) {
            self.held().insert(uid.clone(), version.clone());
        }
    }

    /// Whether `seen` is the echo of the operator's last write of it. An echo is recognised once:
    /// the same version seen again (a relist) is not the write's echo any more.
    pub fn is_echo(&self, seen: &impl Resource) -> bool {
        let meta = seen.meta();
        let (Some(uid), Some(version)) = (&meta.uid, &meta.resource_version) else {
            return false;
        };
        let mut left = self.held();
        if left.get(uid) == Some(version) {
            left.remove(uid);
            true
        } else {
            false
        }
    }

    /// How many writes await their echo.
    pub fn len(&self) -> usize {
        self.held().len()
    }

    /// Whether no write awaits its echo.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while the lock was held left a map that is still whole.
        self.left
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
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
}
