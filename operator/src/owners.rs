//! Mapping namespaced children to their cluster-scoped owners.
//!
//! kube-runtime's `Controller::owns` places an owner in its child's namespace. For a
//! cluster-scoped owner (a Factory, a Workspace) with namespaced children that names an object
//! that does not exist, and, since the controller keys reconciles by reference, lets reconciles
//! of the same owner run at once, racing each other's writes. Children in a namespace are watched
//! with [`cluster_owners`] instead.

use std::sync::Arc;

use fabbrica_crds::labels;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::reconcile::echo::OwnWrites;

/// The watch configuration of children: only what the operator manages.
pub fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
}

/// The owners of kind `K` (cluster-scoped) named in `child`'s owner references.
pub fn cluster_owners<K, C>(child: C) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    C: Resource,
{
    let (kind, api_version) = (K::kind(&()), K::api_version(&()));
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| owner.kind == kind && owner.api_version == api_version)
        .map(|owner| ObjectRef::new(&owner.name))
        .collect()
}

/// [`cluster_owners`], except for the echo of the operator's own write of `child`, which maps to
/// no owner: the reconcile that made the write needs no other.
pub fn owners_unless_echo<K, C>(writes: Arc<OwnWrites>) -> impl Fn(C) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    C: Resource,
{
    move |child| {
        if writes.is_echo(&child) {
            Vec::new()
        } else {
            cluster_owners(child)
        }
    }
}

#[cfg(test)]
mod tests {
    use fabbrica_crds::v1alpha1::{Factory, Workspace};
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn owner(kind: &str, api_version: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn a_namespaced_child_maps_to_its_cluster_scoped_owner_without_a_namespace() {
        let child = ConfigMap {
            metadata: ObjectMeta {
                name: Some("bench-topology".to_owned()),
                namespace: Some("fabbrica-system".to_owned()),
                owner_references: Some(vec![
                    owner("Factory", "fabbrica.io/v1alpha1", "bench"),
                    owner("Workspace", "fabbrica.io/v1alpha1", "team-a"),
                    owner("Factory", "other.example.com/v1", "elsewhere"),
                ]),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let factories = cluster_owners::<Factory, _>(child.clone());
        assert_eq!(factories, vec![ObjectRef::<Factory>::new("bench")]);
        assert_eq!(factories[0].namespace, None);
        let workspaces = cluster_owners::<Workspace, _>(child);
        assert_eq!(workspaces, vec![ObjectRef::<Workspace>::new("team-a")]);
    }

    #[test]
    fn the_echo_of_an_own_write_maps_to_no_owner_and_the_next_change_does() {
        let writes = Arc::new(OwnWrites::default());
        let child = |version: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some("bench-topology".to_owned()),
                uid: Some("uid-map".to_owned()),
                resource_version: Some(version.to_owned()),
                owner_references: Some(vec![owner("Factory", "fabbrica.io/v1alpha1", "bench")]),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let owners = owners_unless_echo::<Factory, ConfigMap>(writes.clone());
        writes.record(&child("7"));
        assert!(owners(child("7")).is_empty());
        assert_eq!(owners(child("8")), vec![ObjectRef::<Factory>::new("bench")]);
    }

    #[test]
    fn a_child_without_owners_maps_to_nothing() {
        assert!(cluster_owners::<Factory, _>(ConfigMap::default()).is_empty());
    }
}
