//! Allocations: GPU-hours granted to a Workspace for a period under one of the site's access
//! modes (`Workspace.spec.allocation`), the modes themselves (`Factory.spec.accessModes`, or the
//! shipped catalog `blueprints/catalog/access-modes.yaml`) and what the operator reports of them
//! (`Workspace.status.allocation`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::factory::DNS_LABEL;

/// A calendar date, `YYYY-MM-DD`.
pub const DATE: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// Seconds in an hour, the unit between GPU-seconds (what is metered) and GPU-hours (what is
/// granted).
pub const SECONDS_PER_HOUR: f64 = 3600.0;

/// GPU-hours granted to a workspace for a period, under one of the site's access modes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.gpuHours) != (has(self.pools) && size(self.pools) > 0)",
        "message": "give either gpuHours (over all pools) or pools (GPU-hours per pool), not both and not neither",
    },
    {
        "rule": "self.end >= self.start",
        "message": "end is before start; valid: an end date on or after the start date",
    },
]))]
pub struct Allocation {
    /// The access mode it is granted under, an `id` of the Factory's `accessModes` (or, when the
    /// Factory lists none, of the EuroHPC modes: `playground`, `fast-lane`, `large-scale`,
    /// `science`). The mode bounds the GPU-hours and the length.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub mode: String,
    /// GPU-hours granted over all pools (`20000`; fractions allowed). Give this or `pools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub gpu_hours: Option<f64>,
    /// GPU-hours granted per pool. Give this or `gpuHours`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool"]))]
    pub pools: Vec<PoolAllocation>,
    /// First day of the allocation (UTC, `2026-01-01`); nothing is admitted before it.
    #[schemars(length(min = 10, max = 10), regex(pattern = DATE))]
    pub start: String,
    /// Last day of the allocation, included (UTC, `2026-03-31`); nothing is admitted after it.
    #[schemars(length(min = 10, max = 10), regex(pattern = DATE))]
    pub end: String,
    /// What happens once the GPU-hours are used up or the period is over.
    #[serde(default)]
    pub on_exhausted: OnExhausted,
}

/// GPU-hours granted on one pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolAllocation {
    /// A pool of the Factory.
    pub pool: String,
    /// GPU-hours granted on it.
    #[schemars(range(min = 0.0))]
    pub gpu_hours: f64,
}

/// What stops when an allocation is used up or over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnExhausted {
    /// Seconds running notebooks (JupyterEnvironments) keep running after the allocation
    /// closed, before they are scaled to zero (default 900).
    #[serde(default = "default_grace")]
    #[schemars(range(max = 604800))]
    pub notebook_grace_seconds: u32,
    /// `Finish` (default): running Jobs and Pods finish, only new work waits. `Stop`: admitted
    /// Kueue workloads are evicted too (the ClusterQueue's `stopPolicy: HoldAndDrain`).
    #[serde(default)]
    pub running_jobs: RunningJobs,
}

fn default_grace() -> u32 {
    900
}

impl Default for OnExhausted {
    fn default() -> Self {
        Self {
            notebook_grace_seconds: default_grace(),
            running_jobs: RunningJobs::default(),
        }
    }
}

/// Whether running work may finish once an allocation closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunningJobs {
    /// Running work finishes; only new work waits.
    #[default]
    Finish,
    /// Running queued work is stopped too.
    Stop,
}

impl Allocation {
    /// GPU-hours granted over all pools.
    pub fn granted_gpu_hours(&self) -> f64 {
        self.gpu_hours
            .unwrap_or_else(|| self.pools.iter().map(|p| p.gpu_hours).sum())
    }

    /// GPU-seconds granted over all pools, rounded down.
    pub fn granted_gpu_seconds(&self) -> u64 {
        gpu_seconds(self.granted_gpu_hours())
    }

    /// The instants the allocation opens (start day, 00:00 UTC) and closes (the day after the
    /// end day, 00:00 UTC); `None` when a date does not parse.
    pub fn window(&self) -> Option<(Timestamp, Timestamp)> {
        let start = parse_date(&self.start)?;
        let end = parse_date(&self.end)?.checked_add(1.day()).ok()?;
        Some((midnight(start)?, midnight(end)?))
    }
}

/// GPU-hours as whole GPU-seconds, rounded down (negative and non-finite as 0).
pub fn gpu_seconds(hours: f64) -> u64 {
    if hours.is_finite() && hours > 0.0 {
        (hours * SECONDS_PER_HOUR).floor() as u64
    } else {
        0
    }
}

/// GPU-seconds as GPU-hours, rounded to a thousandth (3.6 GPU-seconds).
pub fn gpu_hours(seconds: u64) -> f64 {
    (seconds as f64 / SECONDS_PER_HOUR * 1000.0).round() / 1000.0
}

/// A `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Option<Date> {
    if text.len() != 10 {
        return None;
    }
    text.parse().ok()
}

/// 00:00 UTC of a day.
pub fn midnight(date: Date) -> Option<Timestamp> {
    date.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// One way a site grants GPU-hours: its bounds on an allocation's GPU-hours and length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessMode {
    /// What allocations name in `spec.allocation.mode` (`fast-lane`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub id: String,
    /// The name people read (`Fast Lane`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Who it is for and how it is granted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Bounds on the GPU-hours one allocation grants; none means any.
    #[serde(default)]
    pub gpu_hours: GpuHoursLimits,
    /// Bounds on an allocation's length in calendar months; none means any.
    #[serde(default)]
    pub months: MonthsLimits,
}

/// Bounds on an allocation's GPU-hours.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuHoursLimits {
    /// At least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub min: Option<f64>,
    /// At most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max: Option<f64>,
    /// Strictly more than this many (`over: 50000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub over: Option<f64>,
}

impl GpuHoursLimits {
    /// Whether `hours` is within the bounds.
    pub fn admits(&self, hours: f64) -> bool {
        self.min.is_none_or(|m| hours >= m)
            && self.max.is_none_or(|m| hours <= m)
            && self.over.is_none_or(|m| hours > m)
    }

    /// The bounds as people read them (`0 to 50000 GPU-hours`, `over 50000 GPU-hours`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (self.min, self.max) {
            (Some(min), Some(max)) => parts.push(format!("{min} to {max}")),
            (Some(min), None) => parts.push(format!("at least {min}")),
            (None, Some(max)) => parts.push(format!("at most {max}")),
            (None, None) => {}
        }
        if let Some(over) = self.over {
            parts.push(format!("over {over}"));
        }
        if parts.is_empty() {
            "any number of GPU-hours".to_owned()
        } else {
            format!("{} GPU-hours", parts.join(" and "))
        }
    }
}

/// Bounds on an allocation's length in calendar months.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthsLimits {
    /// At least this many months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// At most this many months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Exactly one of these lengths (`[3, 6, 12]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<u32>,
}

/// Where an allocation stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AllocationState {
    /// The workspace has no allocation: its GPU use is metered, not limited.
    #[default]
    Unlimited,
    /// Before the start date: nothing is admitted.
    NotStarted,
    /// Open, under 80 % used.
    Open,
    /// Open, 80 % or more used.
    Warning,
    /// Every granted GPU-hour is used: nothing new is admitted.
    Exhausted,
    /// After the end date: nothing new is admitted.
    Ended,
}

impl AllocationState {
    /// Whether new GPU work is refused.
    pub fn closed(self) -> bool {
        matches!(self, Self::NotStarted | Self::Exhausted | Self::Ended)
    }

    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlimited => "Unlimited",
            Self::NotStarted => "NotStarted",
            Self::Open => "Open",
            Self::Warning => "Warning",
            Self::Exhausted => "Exhausted",
            Self::Ended => "Ended",
        }
    }
}

/// What the operator metered and enforces for a workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationStatus {
    /// `Unlimited` (no allocation, only metered), `NotStarted`, `Open`, `Warning` (80 % used),
    /// `Exhausted` or `Ended`.
    pub state: AllocationState,
    /// The access mode of the allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// First day of the allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last day of the allocation, included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// GPU-hours granted, over all pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_gpu_hours: Option<f64>,
    /// GPU-hours used, over all pools, to a thousandth: finished Pods plus running ones up to
    /// `asOf`.
    pub used_gpu_hours: f64,
    /// GPU-seconds used, exactly as metered.
    pub used_gpu_seconds: u64,
    /// GPUs held by the workspace's running Pods at `asOf`.
    pub running_gpus: u64,
    /// When these figures were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<Time>,
    /// Since when the allocation is closed (used up or ended); notebooks stop a grace period
    /// later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_since: Option<Time>,
    /// Whether the workspace's notebooks are scaled to zero because the allocation closed.
    #[serde(default)]
    pub notebooks_stopped: bool,
    /// GPU-hours used (and granted, with a per-pool allocation) per pool; Pods on no known pool
    /// are under the pool `""`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool"]))]
    pub pools: Vec<PoolUsage>,
    /// GPU-hours used per calendar month (UTC) and pool, what a site reports to its funders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub months: Vec<MonthUsage>,
}

/// GPU use on one pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    /// The pool (`""`: Pods on no known pool).
    pub pool: String,
    /// GPU-seconds used.
    pub used_gpu_seconds: u64,
    /// GPU-hours used, to a thousandth.
    pub used_gpu_hours: f64,
    /// GPU-hours granted on the pool, with a per-pool allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_gpu_hours: Option<f64>,
}

/// GPU use in one calendar month on one pool.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct MonthUsage {
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// The pool (`""`: Pods on no known pool).
    pub pool: String,
    /// GPU-seconds used in that month on that pool.
    pub gpu_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_runs_from_the_start_day_to_the_end_of_the_end_day() {
        let allocation = Allocation {
            mode: "fast-lane".into(),
            gpu_hours: Some(1.5),
            pools: vec![],
            start: "2026-01-01".into(),
            end: "2026-03-31".into(),
            on_exhausted: OnExhausted::default(),
        };
        let (open, close) = allocation.window().unwrap();
        assert_eq!(open.to_string(), "2026-01-01T00:00:00Z");
        assert_eq!(close.to_string(), "2026-04-01T00:00:00Z");
        assert_eq!(allocation.granted_gpu_seconds(), 5400);
        assert_eq!(gpu_hours(5400), 1.5);
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("2026-2-3").is_none());
    }

    #[test]
    fn gpu_hour_limits_admit_their_range_and_say_it() {
        let fast = GpuHoursLimits {
            min: Some(0.0),
            max: Some(50000.0),
            over: None,
        };
        assert!(fast.admits(50000.0) && !fast.admits(50000.5));
        assert_eq!(fast.describe(), "0 to 50000 GPU-hours");
        let large = GpuHoursLimits {
            over: Some(50000.0),
            ..GpuHoursLimits::default()
        };
        assert!(!large.admits(50000.0) && large.admits(50001.0));
        assert_eq!(large.describe(), "over 50000 GPU-hours");
    }
}
