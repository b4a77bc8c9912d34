//! Leader election against the real API server: one replica leads, a second stands by while the
//! Lease is renewed and takes over once renewals stop, and the first then learns it lost.

use std::time::Duration;

use fabbrica_operator::leader::{self, LeaseConfig};
use fabbrica_tests::{client, unique_name};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::DeleteParams;

const NAMESPACE: &str = "default";

/// A short Lease, so that a takeover happens within the test: valid 4 s, renewed every 500 ms.
fn replica(lease: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(4),
        renew: Duration::from_millis(500),
        ..LeaseConfig::new(NAMESPACE, lease, identity)
    }
}

#[tokio::test]
async fn a_standby_takes_over_only_when_the_leader_stops_renewing() -> anyhow::Result<()> {
    let client = client().await?;
    let name = unique_name("fabbrica-leader");
    let a = replica(&name, "replica-a");
    let b = replica(&name, "replica-b");

    assert!(
        leader::try_acquire(&client, &a).await?,
        "the first replica takes a Lease nobody holds"
    );
    let renewing = tokio::spawn({
        let (client, a) = (client.clone(), a.clone());
        async move { leader::hold(&client, &a).await }
    });
    // Longer than the Lease is valid: only a's renewals keep b out.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !leader::try_acquire(&client, &b).await?,
            "the standby took a Lease its leader renews"
        );
    }

    // The leader stops renewing, as when its process dies; the standby takes over.
    renewing.abort();
    tokio::time::timeout(Duration::from_secs(30), leader::acquire(&client, &b)).await??;
    let leases = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
    let spec = leases.get(&name).await?.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));

    // The old leader, still running, finds the Lease taken at its next renewal and stops leading.
    let lost = tokio::time::timeout(Duration::from_secs(30), leader::hold(&client, &a)).await?;
    assert!(
        lost.to_string().contains("taken by another replica"),
        "the old leader was told: {lost}"
    );
    leases.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

/// Two replicas of the operator binary with `--leader-elect`: the leader is killed with SIGKILL,
/// the standby takes the Lease and reconciles an edit made after the kill, and the API server's
/// audit log shows that the two never wrote at once. (The takeover time is a figure of
/// `tests/bench-chaos`; the bound here only keeps a hang from lasting forever.)
#[tokio::test]
async fn the_standby_replica_takes_over_from_a_killed_leader_and_they_never_write_at_once()
-> anyhow::Result<()> {
    let client = client().await?;
    let failover = fabbrica_tests::chaos::failover(&client, 4, Duration::from_secs(120)).await?;
    eprintln!("failover: {failover:?}");
    Ok(())
}
