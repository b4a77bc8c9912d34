//! What the health loop wants of each Node of a pool with validation. Pure.
//!
//! A Node's health lives on the Node, so a restarted operator reads it back: the label
//! [`labels::VALIDATION`] (`passed`, `failed`, or absent until a run decides), the label
//! [`labels::QUARANTINE`] (the reason) and a NoSchedule taint under each key. A validation Job
//! in flight is the only other state, and its result is moved onto the Node before the Job is
//! deleted.

use fabbrica_crds::capacity::{gpus_per_node, node_gpus};
use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{GpuPool, QuarantineReason};
use k8s_openapi::api::core::v1::Taint;

use crate::interned::Labels;
use crate::nodes::NodeFacts;

/// [`labels::VALIDATION`] of a Node that passed.
pub const PASSED: &str = "passed";
/// [`labels::VALIDATION`] of a Node that failed.
pub const FAILED: &str = "failed";
/// The value of the validation taint on a Node that has not passed.
pub const PENDING: &str = "pending";

/// Where a Node's validation Job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not finished.
    Running,
    /// Completed: the check exited 0.
    Passed,
    /// Failed, or ran out of time; why, as the Job says it.
    Failed(String),
}

/// What to do with a Node's validation Job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobAction {
    /// Nothing: there is none and none is needed, or it is running.
    Keep,
    /// Start one.
    Create,
    /// Delete it: its result is on the Node, or it is no longer wanted.
    Delete,
}

/// Something a person should hear about, as an Event on the Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum News {
    /// The Node was quarantined, and why.
    Quarantined(QuarantineReason, String),
    /// The Node passed its validation; `returned` when it leaves quarantine.
    Passed {
        /// It was quarantined before.
        returned: bool,
    },
}

/// The health of one Node, as it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// [`labels::VALIDATION`]: `passed`, `failed` or none.
    pub validation: Option<&'static str>,
    /// [`labels::QUARANTINE`], when quarantined.
    pub quarantine: Option<QuarantineReason>,
    /// The validation Job.
    pub job: JobAction,
    /// What to tell.
    pub news: Option<News>,
}

impl Verdict {
    /// Tenants' Pods may land on the Node: it passed and is not quarantined.
    pub fn serves(&self) -> bool {
        self.validation == Some(PASSED) && self.quarantine.is_none()
    }

    /// The taints the health loop wants on the Node (NoSchedule: running Pods stay).
    pub fn taints(&self) -> Vec<Taint> {
        let mut taints = Vec::new();
        if self.validation != Some(PASSED) {
            taints.push(no_schedule(labels::VALIDATION, PENDING));
        }
        if let Some(reason) = self.quarantine {
            taints.push(no_schedule(labels::QUARANTINE, reason.as_str()));
        }
        taints
    }
}

fn no_schedule(key: &str, value: &str) -> Taint {
    Taint {
        key: key.to_owned(),
        value: Some(value.to_owned()),
        effect: "NoSchedule".to_owned(),
        time_added: None,
    }
}

/// Whether a taint is one the health loop manages.
pub fn is_health_taint(taint: &Taint) -> bool {
    taint.key == labels::VALIDATION || taint.key == labels::QUARANTINE
}

/// The verdict on a Node of `pool` with these labels and facts, whose validation Job is `job`.
///
/// - A Node in maintenance (it carries [`labels::MAINTENANCE`]) keeps its marks; its Job, if
///   any, is deleted, since the drain would fail it. The Maintenance removes the validation label
///   when it releases the Node, so it is validated again.
/// - A Ready Node with fewer physical GPUs than the pool's is quarantined at once, no Job needed;
///   its validation label goes, so it must pass a new run once its GPUs are back.
/// - Otherwise `passed` stands, `failed` keeps the quarantine until the label is removed, and a
///   Node without the label is validated: a Job when it is Ready, the result onto the Node.
pub fn decide(
    pool: &GpuPool,
    node_labels: &Labels,
    facts: &NodeFacts,
    job: Option<&JobState>,
) -> Verdict {
    let label = node_labels.get(labels::VALIDATION);
    let validation = match label {
        Some(PASSED) => Some(PASSED),
        Some(FAILED) => Some(FAILED),
        _ => None,
    };
    let quarantine = node_labels
        .get(labels::QUARANTINE)
        .and_then(QuarantineReason::parse);
    let cleanup = if job.is_some() {
        JobAction::Delete
    } else {
        JobAction::Keep
    };
    if node_labels.contains_key(labels::MAINTENANCE) {
        return Verdict {
            validation,
            quarantine,
            job: cleanup,
            news: None,
        };
    }
    let expected = u64::from(gpus_per_node(pool));
    let present = node_gpus(pool, facts.gpus);
    if facts.ready && present < expected {
        let news = (quarantine != Some(QuarantineReason::GpusMissing)).then(|| {
            News::Quarantined(
                QuarantineReason::GpusMissing,
                format!("{present} of {expected} GPUs allocatable"),
            )
        });
        return Verdict {
            validation: None,
            quarantine: Some(QuarantineReason::GpusMissing),
            job: cleanup,
            news,
        };
    }
    match validation {
        Some(PASSED) => Verdict {
            validation,
            quarantine: None,
            job: cleanup,
            news: None,
        },
        Some(_) => {
            let news = (quarantine != Some(QuarantineReason::ValidationFailed)).then(|| {
                News::Quarantined(
                    QuarantineReason::ValidationFailed,
                    "its validation label says failed".to_owned(),
                )
            });
            Verdict {
                validation,
                quarantine: Some(QuarantineReason::ValidationFailed),
                job: cleanup,
                news,
            }
        }
        None => match job {
            None => Verdict {
                validation: None,
                quarantine,
                job: if facts.ready {
                    JobAction::Create
                } else {
                    JobAction::Keep
                },
                news: None,
            },
            Some(JobState::Running) => Verdict {
                validation: None,
                quarantine,
                job: JobAction::Keep,
                news: None,
            },
            Some(JobState::Passed) => Verdict {
                validation: Some(PASSED),
                quarantine: None,
                job: JobAction::Delete,
                news: Some(News::Passed {
                    returned: quarantine.is_some(),
                }),
            },
            Some(JobState::Failed(why)) => Verdict {
                validation: Some(FAILED),
                quarantine: Some(QuarantineReason::ValidationFailed),
                job: JobAction::Delete,
                news: Some(News::Quarantined(
                    QuarantineReason::ValidationFailed,
                    why.clone(),
                )),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use fabbrica_crds::v1alpha1::GpuSystem;

    use super::*;

    fn pool() -> GpuPool {
        serde_saphyr::from_str(
            "{name: train, nodeSelector: {a: b}, system: dgx-h100, expectedNodes: 2, validation: {}}",
        )
        .unwrap()
    }

    fn facts(gpus: u64) -> NodeFacts {
        NodeFacts {
            resource_version: "1".into(),
            ready: true,
            gpus,
            taints: Default::default(),
        }
    }

    fn node(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_new_node_is_tainted_and_validated_and_serves_once_it_passed() {
        let pool = pool();
        assert_eq!(pool.system, GpuSystem::DgxH100);
        let new = decide(&pool, &node(&[]), &facts(8), None);
        assert_eq!(new.job, JobAction::Create);
        assert!(!new.serves());
        assert_eq!(new.taints().len(), 1, "the validation taint");
        let running = decide(&pool, &node(&[]), &facts(8), Some(&JobState::Running));
        assert_eq!(running.job, JobAction::Keep);
        let passed = decide(&pool, &node(&[]), &facts(8), Some(&JobState::Passed));
        assert_eq!(passed.validation, Some(PASSED));
        assert_eq!(passed.job, JobAction::Delete);
        assert!(passed.serves());
        assert!(passed.taints().is_empty());
        assert_eq!(passed.news, Some(News::Passed { returned: false }));
        let later = decide(
            &pool,
            &node(&[(labels::VALIDATION, PASSED)]),
            &facts(8),
            None,
        );
        assert_eq!(later.job, JobAction::Keep);
        assert!(later.serves());
        assert_eq!(later.news, None);
    }

    #[test]
    fn a_node_not_ready_waits_for_its_run() {
        let mut down = facts(0);
        down.ready = false;
        let verdict = decide(&pool(), &node(&[]), &down, None);
        assert_eq!(verdict.job, JobAction::Keep);
        assert_eq!(
            verdict.quarantine, None,
            "a NotReady Node is not counted short of GPUs"
        );
    }

    #[test]
    fn a_failed_run_quarantines_until_a_new_run_passes() {
        let pool = pool();
        let failed = Some(JobState::Failed("BackoffLimitExceeded".into()));
        let verdict = decide(&pool, &node(&[]), &facts(8), failed.as_ref());
        assert_eq!(verdict.validation, Some(FAILED));
        assert_eq!(verdict.quarantine, Some(QuarantineReason::ValidationFailed));
        assert_eq!(verdict.taints().len(), 2);
        assert!(
            matches!(verdict.news, Some(News::Quarantined(_, ref why)) if why == "BackoffLimitExceeded")
        );
        let marked = node(&[
            (labels::VALIDATION, FAILED),
            (labels::QUARANTINE, "validation-failed"),
        ]);
        let stays = decide(&pool, &marked, &facts(8), None);
        assert_eq!(stays.job, JobAction::Keep, "no new run until asked");
        assert_eq!(stays.news, None);
        // Removing the validation label asks for a new run; the quarantine holds meanwhile.
        let rerun = node(&[(labels::QUARANTINE, "validation-failed")]);
        let asked = decide(&pool, &rerun, &facts(8), None);
        assert_eq!(asked.job, JobAction::Create);
        assert_eq!(asked.quarantine, Some(QuarantineReason::ValidationFailed));
        let back = decide(&pool, &rerun, &facts(8), Some(&JobState::Passed));
        assert!(back.serves());
        assert_eq!(back.news, Some(News::Passed { returned: true }));
    }

    #[test]
    fn a_lost_gpu_quarantines_without_a_job_and_a_new_run_brings_it_back() {
        let pool = pool();
        let lost = decide(
            &pool,
            &node(&[(labels::VALIDATION, PASSED)]),
            &facts(7),
            None,
        );
        assert_eq!(lost.quarantine, Some(QuarantineReason::GpusMissing));
        assert_eq!(
            lost.job,
            JobAction::Keep,
            "no Job for a count the Node reports"
        );
        assert_eq!(lost.validation, None);
        assert!(
            matches!(lost.news, Some(News::Quarantined(_, ref m)) if m == "7 of 8 GPUs allocatable")
        );
        let marked = node(&[(labels::QUARANTINE, "gpus-missing")]);
        assert_eq!(decide(&pool, &marked, &facts(7), None).news, None);
        let restored = decide(&pool, &marked, &facts(8), None);
        assert_eq!(restored.job, JobAction::Create);
        assert_eq!(restored.quarantine, Some(QuarantineReason::GpusMissing));
    }

    #[test]
    fn time_slicing_replicas_count_as_one_gpu() {
        let mut pool = pool();
        pool.sharing = serde_saphyr::from_str("{timeSlicing: {replicas: 4}}").unwrap();
        let full = decide(
            &pool,
            &node(&[(labels::VALIDATION, PASSED)]),
            &facts(32),
            None,
        );
        assert!(full.serves());
        let short = decide(
            &pool,
            &node(&[(labels::VALIDATION, PASSED)]),
            &facts(28),
            None,
        );
        assert_eq!(short.quarantine, Some(QuarantineReason::GpusMissing));
    }

    #[test]
    fn a_node_in_maintenance_keeps_its_marks_and_loses_its_job() {
        let held = node(&[(labels::MAINTENANCE, "m1")]);
        let verdict = decide(&pool(), &held, &facts(0), Some(&JobState::Running));
        assert_eq!(verdict.job, JobAction::Delete);
        assert_eq!(verdict.quarantine, None);
        assert_eq!(verdict.news, None);
    }
}
