//! Leader election with a coordination.k8s.io/v1 Lease, so that only one replica reconciles.
//!
//! A replica takes the Lease when it is absent or expired, renews it every `renew` interval and
//! stops (the process exits, the Deployment restarts it as a standby) when it loses it. Updates
//! carry the Lease's resourceVersion, so two replicas never both believe they lead.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::{Error, Result};

/// Where the Lease is and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub duration: Duration,
    /// How often the leader renews.
    pub renew: Duration,
}

impl LeaseConfig {
    /// A Lease of 15 s renewed every 5 s.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }
}

/// Whether a Lease held by someone is still valid at `now`.
pub fn held_by_other(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else {
        return false;
    };
    if holder == identity {
        return false;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match &spec.renew_time {
        Some(MicroTime(renewed)) => renewed
            .saturating_add(SignedDuration::from_secs(seconds))
            .is_ok_and(|end| end > now),
        None => false,
    }
}

fn spec(config: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let ours =
        previous.and_then(|p| p.holder_identity.as_deref()) == Some(config.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(15)),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Tries once to take or renew the Lease; `Ok(true)` when this replica holds it afterwards.
pub async fn try_acquire(client: &Client, config: &LeaseConfig) -> Result<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let now = Timestamp::now();
    let result = match api.get_opt(&config.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(config, None, now)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Some(lease) if held_by_other(&lease, &config.identity, now) => return Ok(false),
        Some(mut lease) => {
            lease.spec = Some(spec(config, lease.spec.as_ref(), now));
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        // Someone else wrote the Lease first; they lead.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: &Client, config: &LeaseConfig) -> Result<()> {
    loop {
        match try_acquire(client, config).await {
            Ok(true) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "leading");
                return Ok(());
            }
            Ok(false) => {
                tracing::debug!(lease = %config.name, "another replica leads; standing by")
            }
            Err(err) => tracing::warn!(error = %err, "taking the lease failed; retrying"),
        }
        tokio::time::sleep(config.renew).await;
    }
}

/// Renews the Lease until it is lost; returns the reason it was lost.
pub async fn hold(client: &Client, config: &LeaseConfig) -> Error {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew).await;
        match try_acquire(client, config).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                return Error::Lease(format!(
                    "lease {} was taken by another replica",
                    config.name
                ));
            }
            Err(err) if last_renewal.elapsed() >= config.duration => {
                return Error::Lease(format!(
                    "could not renew lease {} in time: {err}",
                    config.name
                ));
            }
            Err(err) => tracing::warn!(error = %err, "renewing the lease failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_fresh_lease_of_another_replica_is_respected_and_an_expired_one_is_not() {
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        assert!(held_by_other(
            &lease("a", "2026-01-01T00:00:20Z".parse().unwrap()),
            "b",
            now
        ));
        assert!(!held_by_other(
            &lease("a", "2026-01-01T00:00:10Z".parse().unwrap()),
            "b",
            now
        ));
        assert!(!held_by_other(
            &lease("b", "2026-01-01T00:00:20Z".parse().unwrap()),
            "b",
            now
        ));
    }
}
