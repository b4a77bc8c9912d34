//! The allocation's state and status from the metered usage, pure: where it stands, whether the
//! notebooks stop, the condition, and when to look again.

use std::time::Duration;

use fabbrica_crds::v1alpha1::{Allocation, AllocationState, AllocationStatus, gpu_hours};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::meter::Usage;
use crate::conditions::{reasons, types};
use crate::reconcile::conditions::condition;

/// How often the used GPU-hours of a workspace with running Pods are written to its status.
pub const REFRESH: Duration = Duration::from_secs(60);
/// How often a workspace without running Pods is looked at again.
pub const IDLE: Duration = Duration::from_secs(300);

/// The state of `allocation` at `now` with `used` GPU-seconds in its window.
pub fn state(allocation: &Allocation, used: u64, now: Timestamp) -> AllocationState {
    let Some((open, close)) = allocation.window() else {
        return AllocationState::Unlimited;
    };
    let granted = allocation.granted_gpu_seconds();
    if now < open {
        AllocationState::NotStarted
    } else if now >= close {
        AllocationState::Ended
    } else if used >= granted {
        AllocationState::Exhausted
    } else if used.saturating_mul(5) >= granted.saturating_mul(4) {
        AllocationState::Warning
    } else {
        AllocationState::Open
    }
}

/// The status, the `Allocation` condition and when to reconcile again.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `status.allocation`.
    pub status: AllocationStatus,
    /// The `Allocation` condition.
    pub condition: Condition,
    /// When to look again: the next threshold, date or grace period end, at most [`REFRESH`]
    /// while Pods run.
    pub requeue: Duration,
}

fn seconds_until(now: Timestamp, then: Timestamp) -> Option<u64> {
    let s = then.as_second() - now.as_second();
    (s > 0).then_some(s as u64)
}

/// Decides the status of a workspace with `allocation` (none: metered only) and `usage` at `now`.
pub fn decide(
    allocation: Option<&Allocation>,
    usage: &Usage,
    previous: Option<&AllocationStatus>,
    generation: Option<i64>,
    now: &Time,
) -> Decision {
    let at = now.0;
    let mut wake: Vec<u64> = vec![if usage.running_gpus > 0 {
        REFRESH.as_secs()
    } else {
        IDLE.as_secs()
    }];
    let (first, last) = allocation.map_or((None, None), |a| {
        (Some(a.start.as_str()), Some(a.end.as_str()))
    });
    let used = usage.between(first, last);
    let mut status = AllocationStatus {
        used_gpu_hours: gpu_hours(used),
        used_gpu_seconds: used,
        running_gpus: usage.running_gpus,
        as_of: Some(now.clone()),
        pools: usage.pools(),
        months: usage.months(),
        ..AllocationStatus::default()
    };
    let condition = match allocation {
        None => condition(
            types::ALLOCATION,
            true,
            reasons::UNLIMITED,
            format!(
                "no allocation: {} GPU-hours metered, not limited",
                gpu_hours(used)
            ),
            generation,
            now,
        ),
        Some(allocation) => {
            let state = state(allocation, used, at);
            let granted = allocation.granted_gpu_seconds();
            status.state = state;
            status.mode = Some(allocation.mode.clone());
            status.start = Some(allocation.start.clone());
            status.end = Some(allocation.end.clone());
            status.granted_gpu_hours = Some(allocation.granted_gpu_hours());
            for pool in &mut status.pools {
                pool.granted_gpu_hours = allocation
                    .pools
                    .iter()
                    .find(|p| p.pool == pool.pool)
                    .map(|p| p.gpu_hours);
            }
            for grant in &allocation.pools {
                if !status.pools.iter().any(|p| p.pool == grant.pool) {
                    status.pools.push(fabbrica_crds::v1alpha1::PoolUsage {
                        pool: grant.pool.clone(),
                        granted_gpu_hours: Some(grant.gpu_hours),
                        ..Default::default()
                    });
                }
            }
            status.pools.sort_by(|a, b| a.pool.cmp(&b.pool));
            if state.closed() {
                let since = previous
                    .filter(|p| p.state.closed())
                    .and_then(|p| p.closed_since.clone())
                    .unwrap_or_else(|| now.clone());
                let grace = i64::from(allocation.on_exhausted.notebook_grace_seconds);
                let stop_at = since.0.as_second() + grace;
                status.notebooks_stopped = at.as_second() >= stop_at;
                if !status.notebooks_stopped {
                    wake.push((stop_at - at.as_second()).max(1) as u64);
                }
                status.closed_since = Some(since);
            }
            if let Some((open, close)) = allocation.window() {
                wake.extend(seconds_until(at, open));
                wake.extend(seconds_until(at, close));
            }
            if !state.closed() && usage.running_gpus > 0 {
                for threshold in [granted.saturating_mul(4) / 5, granted] {
                    if threshold > used {
                        wake.push((threshold - used).div_ceil(usage.running_gpus));
                    }
                }
            }
            let percent = used.saturating_mul(100).checked_div(granted).unwrap_or(100);
            let figures = format!(
                "{} of {} GPU-hours used ({percent} %), {} to {}",
                gpu_hours(used),
                allocation.granted_gpu_hours(),
                allocation.start,
                allocation.end
            );
            let (open, reason, message) = match state {
                AllocationState::Open | AllocationState::Unlimited => {
                    (true, reasons::ALLOCATION_OPEN, figures)
                }
                AllocationState::Warning => (
                    true,
                    reasons::ALLOCATION_NEARLY_USED,
                    format!("80 % or more used: {figures}"),
                ),
                AllocationState::Exhausted => (
                    false,
                    reasons::ALLOCATION_EXHAUSTED,
                    format!("every granted GPU-hour is used, new GPU work is refused: {figures}"),
                ),
                AllocationState::NotStarted => (
                    false,
                    reasons::ALLOCATION_NOT_STARTED,
                    format!("the allocation has not started, new GPU work is refused: {figures}"),
                ),
                AllocationState::Ended => (
                    false,
                    reasons::ALLOCATION_ENDED,
                    format!("the allocation has ended, new GPU work is refused: {figures}"),
                ),
            };
            condition(types::ALLOCATION, open, reason, message, generation, now)
        }
    };
    let requeue = Duration::from_secs(wake.into_iter().min().unwrap_or(IDLE.as_secs()).max(1));
    Decision {
        status,
        condition,
        requeue,
    }
}

/// Whether `next` says something `previous` does not, beyond the running Pods' use growing: a
/// status is rewritten on such a change, or every [`REFRESH`].
pub fn worth_writing(
    previous: Option<&AllocationStatus>,
    next: &AllocationStatus,
    now: &Time,
) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let stale = previous
        .as_of
        .as_ref()
        .is_none_or(|t| now.0.as_second() - t.0.as_second() >= REFRESH.as_secs() as i64);
    let same_facts = AllocationStatus {
        used_gpu_hours: 0.0,
        used_gpu_seconds: 0,
        as_of: None,
        pools: vec![],
        months: vec![],
        ..previous.clone()
    } == AllocationStatus {
        used_gpu_hours: 0.0,
        used_gpu_seconds: 0,
        as_of: None,
        pools: vec![],
        months: vec![],
        ..next.clone()
    };
    let grew_only = previous.running_gpus > 0 && same_facts;
    let unchanged = AllocationStatus {
        as_of: None,
        ..previous.clone()
    } == AllocationStatus {
        as_of: None,
        ..next.clone()
    };
    !(unchanged || (grew_only && !stale))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fabbrica_crds::v1alpha1::OnExhausted;

    use super::*;

    fn allocation(hours: f64) -> Allocation {
        Allocation {
            mode: "playground".into(),
            gpu_hours: Some(hours),
            pools: vec![],
            start: "2026-12-01".into(),
            end: "2026-12-31".into(),
            on_exhausted: OnExhausted {
                notebook_grace_seconds: 60,
                ..OnExhausted::default()
            },
        }
    }

    fn used(seconds: u64, running: u64) -> Usage {
        Usage {
            days: BTreeMap::from([(
                "2026-12-02".to_owned(),
                BTreeMap::from([(String::new(), seconds)]),
            )]),
            running_gpus: running,
        }
    }

    fn time(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    #[test]
    fn an_allocation_warns_at_80_percent_and_closes_at_100_and_outside_its_dates() {
        let a = allocation(1.0); // 3600 GPU-seconds
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        assert_eq!(
            state(&a, 0, at("2026-11-30T23:59:59Z")),
            AllocationState::NotStarted
        );
        assert_eq!(
            state(&a, 2879, at("2026-12-02T00:00:00Z")),
            AllocationState::Open
        );
        assert_eq!(
            state(&a, 2880, at("2026-12-02T00:00:00Z")),
            AllocationState::Warning
        );
        assert_eq!(
            state(&a, 3600, at("2026-12-02T00:00:00Z")),
            AllocationState::Exhausted
        );
        assert_eq!(
            state(&a, 0, at("2026-12-31T23:59:59Z")),
            AllocationState::Open
        );
        assert_eq!(
            state(&a, 0, at("2027-01-01T00:00:00Z")),
            AllocationState::Ended
        );
        // Raising the budget reopens it.
        assert_eq!(
            state(&allocation(2.0), 3600, at("2026-12-02T00:00:00Z")),
            AllocationState::Open
        );
    }

    #[test]
    fn running_pods_wake_the_controller_when_they_reach_the_next_threshold() {
        let a = allocation(1.0);
        let now = time("2026-12-02T00:00:00Z");
        let decision = decide(Some(&a), &used(2860, 4), None, Some(1), &now);
        assert_eq!(decision.status.state, AllocationState::Open);
        // 80 % is 2880: 20 GPU-seconds away at 4 GPUs.
        assert_eq!(decision.requeue, Duration::from_secs(5));
        assert_eq!(decision.condition.reason, reasons::ALLOCATION_OPEN);
        assert_eq!(decision.status.used_gpu_seconds, 2860);
        // Further away than a refresh: the status is refreshed first.
        let far = decide(Some(&a), &used(0, 1), None, Some(1), &now);
        assert_eq!(far.requeue, REFRESH);
        assert_eq!(decision.status.granted_gpu_hours, Some(1.0));
    }

    #[test]
    fn notebooks_stop_a_grace_period_after_the_allocation_closed() {
        let a = allocation(1.0);
        let first = decide(
            Some(&a),
            &used(3600, 2),
            None,
            Some(1),
            &time("2026-12-02T00:00:00Z"),
        );
        assert_eq!(first.status.state, AllocationState::Exhausted);
        assert!(!first.status.notebooks_stopped);
        assert_eq!(first.requeue, Duration::from_secs(60));
        assert_eq!(first.condition.status, "False");
        let later = decide(
            Some(&a),
            &used(3700, 2),
            Some(&first.status),
            Some(1),
            &time("2026-12-02T00:01:00Z"),
        );
        assert_eq!(later.status.closed_since, first.status.closed_since);
        assert!(later.status.notebooks_stopped);
        // Raised: open again, nothing stopped.
        let raised = decide(
            Some(&allocation(2.0)),
            &used(3700, 0),
            Some(&later.status),
            Some(2),
            &time("2026-12-02T00:02:00Z"),
        );
        assert_eq!(raised.status.state, AllocationState::Open);
        assert!(!raised.status.notebooks_stopped && raised.status.closed_since.is_none());
    }

    #[test]
    fn only_changes_beyond_the_running_use_growing_are_written_at_once() {
        let a = allocation(1.0);
        let one = decide(
            Some(&a),
            &used(100, 2),
            None,
            Some(1),
            &time("2026-12-02T00:00:00Z"),
        );
        let two = decide(
            Some(&a),
            &used(110, 2),
            Some(&one.status),
            Some(1),
            &time("2026-12-02T00:00:05Z"),
        );
        assert!(!worth_writing(
            Some(&one.status),
            &two.status,
            &time("2026-12-02T00:00:05Z")
        ));
        assert!(worth_writing(
            Some(&one.status),
            &two.status,
            &time("2026-12-02T00:01:00Z")
        ));
        let stopped = decide(
            Some(&a),
            &used(110, 0),
            Some(&one.status),
            Some(1),
            &time("2026-12-02T00:00:05Z"),
        );
        assert!(worth_writing(
            Some(&one.status),
            &stopped.status,
            &time("2026-12-02T00:00:05Z")
        ));
        let same = decide(
            Some(&a),
            &used(110, 0),
            Some(&stopped.status),
            Some(1),
            &time("2026-12-02T00:09:00Z"),
        );
        assert!(!worth_writing(
            Some(&stopped.status),
            &same.status,
            &time("2026-12-02T00:09:00Z")
        ));
    }
}
