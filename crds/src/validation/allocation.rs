//! The rules of a Workspace's allocation: its dates, its pools, and its access mode's limits on
//! GPU-hours and length (the Factory's `accessModes`, or the shipped catalog).

use k8s_openapi::jiff::ToSpan;
use k8s_openapi::jiff::civil::Date;

use super::{Problem, duplicates, listing};
use crate::access_modes::modes_of;
use crate::v1alpha1::{AccessMode, Allocation, FactorySpec, MonthsLimits, parse_date};

/// Every problem of `allocation`, with field paths under `spec.allocation`.
pub(crate) fn check_allocation(
    allocation: &Allocation,
    factory_name: &str,
    factory: Option<&FactorySpec>,
    p: &mut Vec<Problem>,
) {
    const PATH: &str = "spec.allocation";
    let per_pool = !allocation.pools.is_empty();
    if allocation.gpu_hours.is_some() == per_pool {
        p.push(Problem::new(
            format!("{PATH}.gpuHours"),
            "give either gpuHours (over all pools) or pools (GPU-hours per pool), not both and not neither",
        ));
    }
    if let Some(hours) = allocation.gpu_hours
        && !(hours.is_finite() && hours >= 0.0)
    {
        p.push(Problem::new(
            format!("{PATH}.gpuHours"),
            format!("{hours} is not a number of GPU-hours; valid: 0 or more"),
        ));
    }
    duplicates(
        allocation.pools.iter().map(|q| q.pool.as_str()),
        |i| format!("{PATH}.pools[{i}].pool"),
        "pool",
        p,
    );
    for (i, pool) in allocation.pools.iter().enumerate() {
        if !(pool.gpu_hours.is_finite() && pool.gpu_hours >= 0.0) {
            p.push(Problem::new(
                format!("{PATH}.pools[{i}].gpuHours"),
                format!(
                    "{} is not a number of GPU-hours; valid: 0 or more",
                    pool.gpu_hours
                ),
            ));
        }
        if let Some(factory) = factory
            && !factory.gpu_pools.iter().any(|x| x.name == pool.pool)
        {
            p.push(Problem::new(
                format!("{PATH}.pools[{i}].pool"),
                format!(
                    "no pool {:?} in factory {factory_name:?}; {}",
                    pool.pool,
                    listing(factory.gpu_pools.iter().map(|x| x.name.as_str()))
                ),
            ));
        }
    }
    let date = |field: &str, text: &str, p: &mut Vec<Problem>| {
        let parsed = parse_date(text);
        if parsed.is_none() {
            p.push(Problem::new(
                format!("{PATH}.{field}"),
                format!("{text:?} is not a date; valid: YYYY-MM-DD, e.g. 2026-01-01"),
            ));
        }
        parsed
    };
    let start = date("start", &allocation.start, p);
    let end = date("end", &allocation.end, p);
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        p.push(Problem::new(
            format!("{PATH}.end"),
            format!(
                "{end} is before the start {start}; valid: an end date on or after the start date"
            ),
        ));
    }
    let modes = modes_of(factory);
    let Some(mode) = modes.iter().find(|m| m.id == allocation.mode) else {
        p.push(Problem::new(
            format!("{PATH}.mode"),
            format!(
                "no access mode {:?} at this site; {}",
                allocation.mode,
                listing(modes.iter().map(|m| m.id.as_str()))
            ),
        ));
        return;
    };
    let hours = allocation.granted_gpu_hours();
    if hours.is_finite() && !mode.gpu_hours.admits(hours) {
        let field = if per_pool { "pools" } else { "gpuHours" };
        p.push(Problem::new(
            format!("{PATH}.{field}"),
            format!(
                "{hours} GPU-hours is outside the limits of access mode {:?}; valid: {}",
                mode.id,
                mode.gpu_hours.describe()
            ),
        ));
    }
    if let (Some(start), Some(end)) = (start, end)
        && end >= start
        && let Some(valid) = length_problem(mode, start, end)
    {
        p.push(Problem::new(format!("{PATH}.end"), valid));
    }
}

/// The last day of an allocation of `months` calendar months from `start`.
fn last_day(start: Date, months: u32) -> Option<Date> {
    start
        .checked_add(i64::from(months).months())
        .ok()?
        .checked_sub(1.day())
        .ok()
}

/// What is wrong with an allocation from `start` to `end` (last day included) under `mode`,
/// naming the valid end dates; `None` when its length is allowed.
fn length_problem(mode: &AccessMode, start: Date, end: Date) -> Option<String> {
    let MonthsLimits { min, max, allowed } = &mode.months;
    let id = &mode.id;
    if !allowed.is_empty() {
        let ends: Vec<(u32, Date)> = allowed
            .iter()
            .filter_map(|&n| last_day(start, n).map(|d| (n, d)))
            .collect();
        if ends.iter().any(|(_, d)| *d == end) {
            return None;
        }
        let valid: Vec<String> = ends
            .iter()
            .map(|(n, d)| format!("{d} ({n} months)"))
            .collect();
        return Some(format!(
            "access mode {id:?} grants allocations of exactly {} months; from {start}, valid ends: {}",
            allowed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            valid.join(", ")
        ));
    }
    let earliest = min.and_then(|n| last_day(start, n));
    let latest = max.and_then(|n| last_day(start, n));
    let short = earliest.is_some_and(|d| end < d);
    let long = latest.is_some_and(|d| end > d);
    if !(short || long) {
        return None;
    }
    let range = match (min, max, earliest, latest) {
        (Some(a), Some(b), Some(e), Some(l)) => {
            format!("{a} to {b} months; from {start}, valid ends: {e} to {l}")
        }
        (Some(a), _, Some(e), _) => {
            format!("at least {a} months; from {start}, valid ends: {e} or later")
        }
        (_, Some(b), _, Some(l)) => {
            format!("at most {b} months; from {start}, valid ends: up to {l}")
        }
        _ => "other lengths".to_owned(),
    };
    Some(format!(
        "the allocation from {start} to {end} is too {}: access mode {id:?} grants {range}",
        if short { "short" } else { "long" }
    ))
}
