//! Metering, pure: what a Pod held (GPUs, from when to when, as Kubernetes reports it), the
//! ledger of finished Pods, and the usage a ledger and the running Pods add up to.
//!
//! The ledger counts every finished GPU Pod exactly once: a finished Pod is added under its UID
//! (never again while the entry exists), and its entry is dropped only once a consistent list of
//! the namespace no longer shows the Pod, which a deleted Pod never comes back to. Its GPU-seconds
//! stay in the per-day totals. Running Pods are not in the ledger: their usage is computed from
//! their start time whenever it is read.

use std::collections::{BTreeMap, BTreeSet};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{MonthUsage, PoolUsage, gpu_hours};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

/// The finalizer that keeps a GPU Pod of a workspace until its use is in the ledger.
pub const POD_FINALIZER: &str = "fabbrica.io/gpu-accounting";

/// What a GPU Pod is, for metering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.name`.
    pub name: String,
    /// `nvidia.com/gpu` the Pod holds (its effective request).
    pub gpus: u64,
    /// The pool it runs on (its `fabbrica.io/pool` node selector), `""` when unknown.
    pub pool: String,
    /// Whether it carries [`POD_FINALIZER`].
    pub finalizer: bool,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Where it stands.
    pub phase: Held,
}

/// How long a Pod held its GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Not started: it holds nothing yet.
    NotStarted,
    /// Running since `start`.
    Running {
        /// When its kubelet started it.
        start: Timestamp,
    },
    /// Finished: held from `start` to `end` (none when it never started).
    Finished {
        /// When it started.
        start: Option<Timestamp>,
        /// When it ended.
        end: Timestamp,
    },
}

/// `nvidia.com/gpu` of a container: its limit (which extended resources require to equal the
/// request), else its request.
fn container_gpus(container: &Container) -> u64 {
    let resources = container.resources.as_ref();
    let of = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        map.and_then(|m| m.get(labels::GPU_RESOURCE))
            .and_then(|q| q.0.parse::<u64>().ok())
    };
    of(resources.and_then(|r| r.limits.as_ref()))
        .or_else(|| of(resources.and_then(|r| r.requests.as_ref())))
        .unwrap_or(0)
}

/// The Pod's effective GPU request, as the scheduler counts it: the app containers and sidecars
/// together, or the largest init container if that is more.
pub fn pod_gpus(pod: &Pod) -> u64 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let sidecars: u64 = init
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(container_gpus)
        .sum();
    let largest_init = init
        .iter()
        .filter(|c| c.restart_policy.as_deref() != Some("Always"))
        .map(container_gpus)
        .max()
        .unwrap_or(0);
    let apps: u64 = spec.containers.iter().map(container_gpus).sum();
    (apps + sidecars).max(largest_init)
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let apps = status.and_then(|s| s.container_statuses.as_ref());
    let inits = status.and_then(|s| s.init_container_statuses.as_ref());
    apps.into_iter()
        .flatten()
        .chain(inits.into_iter().flatten())
}

/// Reads a GPU Pod's facts at `now`; `None` for a Pod without GPUs.
///
/// Start: the Pod's `status.startTime` (its kubelet accepted it and allocated its devices), else
/// its earliest container start. End: its containers' latest termination once the Pod is
/// `Succeeded` or `Failed`, or once it is deleted and every container has terminated; a deleted
/// Pod whose containers report no termination ended at its `deletionTimestamp`, the latest its
/// kubelet may stop it, once that has passed.
pub fn pod_facts(pod: &Pod, now: Timestamp) -> Option<PodFacts> {
    let gpus = pod_gpus(pod);
    if gpus == 0 {
        return None;
    }
    let status = pod.status.as_ref();
    let container_starts = statuses(pod).filter_map(|c| {
        let state = c.state.as_ref()?;
        state
            .running
            .as_ref()
            .and_then(|r| r.started_at.as_ref())
            .or_else(|| {
                state
                    .terminated
                    .as_ref()
                    .and_then(|t| t.started_at.as_ref())
            })
            .map(|t| t.0)
    });
    let start = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| container_starts.min());
    let all: Vec<&ContainerStatus> = statuses(pod).collect();
    let finished_at = all
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let all_terminated = !all.is_empty()
        && all
            .iter()
            .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()));
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let deletion = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0);
    let last_transition = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max();
    let held = if matches!(phase, "Succeeded" | "Failed") {
        let end = finished_at
            .or(last_transition)
            .or(deletion)
            .or(start)
            .unwrap_or(now);
        Held::Finished { start, end }
    } else if let Some(deleted) = deletion {
        if start.is_none() {
            Held::Finished {
                start,
                end: deleted.min(now),
            }
        } else if all_terminated && let Some(end) = finished_at {
            Held::Finished { start, end }
        } else if deleted <= now {
            Held::Finished {
                start,
                end: deleted,
            }
        } else {
            Held::Running {
                start: start.unwrap_or(now),
            }
        }
    } else {
        match start {
            Some(start) => Held::Running { start },
            None => Held::NotStarted,
        }
    };
    let pool = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .and_then(|s| s.get(labels::POOL))
        .cloned()
        .unwrap_or_default();
    Some(PodFacts {
        uid: pod.uid().unwrap_or_default(),
        name: pod.name_any(),
        gpus,
        pool,
        finalizer: pod.finalizers().iter().any(|f| f == POD_FINALIZER),
        deleting: deletion.is_some(),
        phase: held,
    })
}

/// The UTC day of an instant.
pub fn day_of(t: Timestamp) -> Date {
    t.to_zoned(TimeZone::UTC).date()
}

/// GPU-seconds of `gpus` held from `start` to `end`, split by UTC day (whole seconds: both ends
/// are truncated to the second, so the parts add up to the whole).
pub fn split_by_day(gpus: u64, start: Timestamp, end: Timestamp) -> Vec<(Date, u64)> {
    let mut from = start.as_second();
    let to = end.as_second();
    let mut parts = Vec::new();
    while from < to {
        let Ok(at) = Timestamp::from_second(from) else {
            break;
        };
        let day = day_of(at);
        let next = day
            .checked_add(1.day())
            .ok()
            .and_then(fabbrica_crds::v1alpha1::midnight)
            .map_or(to, |t| t.as_second().min(to));
        parts.push((day, gpus * (next - from) as u64));
        from = next;
    }
    parts
}

/// One finished Pod in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The Pod's name, for people reading the ledger.
    pub name: String,
    /// GPUs it held.
    pub gpus: u64,
    /// Its pool.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool: String,
    /// GPU-seconds it used.
    pub gpu_seconds: u64,
}

/// The durable record of a workspace's finished GPU Pods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// GPU-seconds of every finished Pod ever accounted, per UTC day (`YYYY-MM-DD`) and pool.
    #[serde(default)]
    pub days: BTreeMap<String, BTreeMap<String, u64>>,
    /// Finished Pods accounted that may still exist, by UID: never counted again.
    #[serde(default)]
    pub pods: BTreeMap<String, Entry>,
    /// Finished Pods accounted since the ledger began.
    #[serde(default)]
    pub accounted: u64,
}

impl Ledger {
    fn add(&mut self, pool: &str, parts: &[(Date, u64)]) {
        for (day, seconds) in parts {
            *self
                .days
                .entry(day.to_string())
                .or_default()
                .entry(pool.to_owned())
                .or_default() += seconds;
        }
    }

    /// GPU-seconds of finished Pods over all days.
    pub fn total(&self) -> u64 {
        self.days.values().flat_map(BTreeMap::values).sum()
    }
}

/// What one pass over a namespace's Pods decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settlement {
    /// The ledger with every finished Pod in it, and the entries of Pods that are gone dropped.
    pub ledger: Ledger,
    /// Finished Pods to release (remove [`POD_FINALIZER`]) once the ledger is written.
    pub release: Vec<String>,
    /// Unfinished Pods without [`POD_FINALIZER`], to add it to.
    pub adopt: Vec<String>,
    /// Running Pods: GPUs, start and pool.
    pub running: Vec<(u64, Timestamp, String)>,
}

/// Settles `pods` (a consistent list of the namespace's GPU Pods) against `ledger`.
pub fn settle(ledger: &Ledger, pods: &[PodFacts]) -> Settlement {
    let mut next = ledger.clone();
    let mut release = Vec::new();
    let mut adopt = Vec::new();
    let mut running = Vec::new();
    for pod in pods {
        match pod.phase {
            Held::Finished { start, end } => {
                if !next.pods.contains_key(&pod.uid) {
                    let parts = start.map_or_else(Vec::new, |s| split_by_day(pod.gpus, s, end));
                    next.add(&pod.pool, &parts);
                    next.pods.insert(
                        pod.uid.clone(),
                        Entry {
                            name: pod.name.clone(),
                            gpus: pod.gpus,
                            pool: pod.pool.clone(),
                            gpu_seconds: parts.iter().map(|(_, s)| s).sum(),
                        },
                    );
                    next.accounted += 1;
                }
                if pod.finalizer {
                    release.push(pod.name.clone());
                }
            }
            Held::Running { start } => {
                running.push((pod.gpus, start, pod.pool.clone()));
                if !pod.finalizer && !pod.deleting {
                    adopt.push(pod.name.clone());
                }
            }
            Held::NotStarted => {
                if !pod.finalizer && !pod.deleting {
                    adopt.push(pod.name.clone());
                }
            }
        }
    }
    // A Pod missing from a consistent list is deleted for good: its entry is no longer needed.
    let listed: BTreeSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    next.pods.retain(|uid, _| listed.contains(uid.as_str()));
    Settlement {
        ledger: next,
        release,
        adopt,
        running,
    }
}

/// GPU use at an instant: the ledger plus the running Pods up to then.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// GPU-seconds per UTC day and pool.
    pub days: BTreeMap<String, BTreeMap<String, u64>>,
    /// GPUs held by running Pods.
    pub running_gpus: u64,
}

/// The ledger's days plus every running Pod's use from its start to `now`.
pub fn usage(ledger: &Ledger, running: &[(u64, Timestamp, String)], now: Timestamp) -> Usage {
    let mut days = ledger.days.clone();
    for (gpus, start, pool) in running {
        for (day, seconds) in split_by_day(*gpus, *start, now) {
            *days
                .entry(day.to_string())
                .or_default()
                .entry(pool.clone())
                .or_default() += seconds;
        }
    }
    Usage {
        days,
        running_gpus: running.iter().map(|(g, _, _)| g).sum(),
    }
}

impl Usage {
    /// GPU-seconds on the days from `first` to `last` (both included, `YYYY-MM-DD`); all days
    /// without bounds.
    pub fn between(&self, first: Option<&str>, last: Option<&str>) -> u64 {
        self.days
            .iter()
            .filter(|(day, _)| first.is_none_or(|f| day.as_str() >= f))
            .filter(|(day, _)| last.is_none_or(|l| day.as_str() <= l))
            .flat_map(|(_, pools)| pools.values())
            .sum()
    }

    /// GPU-seconds per pool over every day.
    pub fn pools(&self) -> Vec<PoolUsage> {
        let mut pools: BTreeMap<&str, u64> = BTreeMap::new();
        for day in self.days.values() {
            for (pool, seconds) in day {
                *pools.entry(pool).or_default() += seconds;
            }
        }
        pools
            .into_iter()
            .map(|(pool, seconds)| PoolUsage {
                pool: pool.to_owned(),
                used_gpu_seconds: seconds,
                used_gpu_hours: gpu_hours(seconds),
                granted_gpu_hours: None,
            })
            .collect()
    }

    /// GPU-seconds per calendar month (`YYYY-MM`) and pool.
    pub fn months(&self) -> Vec<MonthUsage> {
        let mut months: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (day, pools) in &self.days {
            for (pool, seconds) in pools {
                *months.entry((&day[..7], pool)).or_default() += seconds;
            }
        }
        months
            .into_iter()
            .map(|((month, pool), gpu_seconds)| MonthUsage {
                month: month.to_owned(),
                pool: pool.to_owned(),
                gpu_seconds,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
