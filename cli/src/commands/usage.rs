//! `fabbrica usage`: GPU-hours per workspace and month, read from the Workspaces of a live
//! cluster (their `status.allocation`, which the operator meters from their Pods): the figures a
//! site reports to its funders. `-o csv` for spreadsheets, `-o json` for pipelines.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Context;
use fabbrica_crds::v1alpha1::{Workspace, gpu_hours};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::output::table;

/// Report GPU-hours used per workspace and month, with each allocation's grant.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// First month to report (`2026-01`, or a date, whose month counts); by default the first
    /// month with use.
    #[arg(long, value_name = "DATE", value_parser = month)]
    pub from: Option<String>,
    /// Last month to report (`2026-06`, or a date, whose month counts); by default the last
    /// month with use.
    #[arg(long, value_name = "DATE", value_parser = month)]
    pub to: Option<String>,
    /// Output format: text for people, csv for spreadsheets, json for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

/// `fabbrica usage`'s output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    #[default]
    Text,
    /// Comma-separated values, one row per workspace and month.
    Csv,
    /// One JSON document.
    Json,
}

/// A month (`YYYY-MM`) from `YYYY-MM` or `YYYY-MM-DD`.
fn month(text: &str) -> Result<String, String> {
    let valid = "valid: a month (2026-01) or a date (2026-01-15)";
    let date = if text.len() == 7 {
        format!("{text}-01")
    } else {
        text.to_owned()
    };
    match fabbrica_crds::v1alpha1::parse_date(&date) {
        Some(d) => Ok(format!("{:04}-{:02}", d.year(), d.month())),
        None => Err(format!("{text:?} is not a month or a date; {valid}")),
    }
}

/// What `fabbrica usage` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// First month reported, when bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last month reported, when bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// One row per workspace and month with use.
    pub rows: Vec<Row>,
    /// One total per workspace over the months reported.
    pub workspaces: Vec<Total>,
}

/// A workspace's use in one month.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub workspace: String,
    pub tenant: String,
    /// `startup`, `sme`, `research` or `publicBody`.
    pub tenant_kind: String,
    pub factory: String,
    /// The allocation's access mode; empty without an allocation.
    pub mode: String,
    /// `YYYY-MM`, UTC.
    pub month: String,
    pub gpu_hours: f64,
    pub gpu_seconds: u64,
}

/// A workspace's use over the months reported, and its allocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Total {
    pub workspace: String,
    pub tenant: String,
    pub mode: String,
    pub gpu_hours: f64,
    /// GPU-hours the allocation grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_gpu_hours: Option<f64>,
    /// GPU-hours used in the allocation's period, as its status reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_gpu_hours: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// `Unlimited`, `NotStarted`, `Open`, `Warning`, `Exhausted`, `Ended`; `Unknown` before the
    /// operator reported.
    pub state: String,
}

fn json_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The report of `workspaces` for the months from `from` to `to` (both `YYYY-MM`, included).
pub fn report(workspaces: &[Workspace], from: Option<&str>, to: Option<&str>) -> Report {
    let mut workspaces: Vec<&Workspace> = workspaces.iter().collect();
    workspaces.sort_by_key(|w| w.name_any());
    let mut rows = Vec::new();
    let mut totals = Vec::new();
    for ws in workspaces {
        let status = ws.status.as_ref().and_then(|s| s.allocation.as_ref());
        let mode = ws
            .spec
            .allocation
            .as_ref()
            .map(|a| a.mode.clone())
            .unwrap_or_default();
        let mut months: BTreeMap<&str, u64> = BTreeMap::new();
        for m in status.map(|s| s.months.as_slice()).unwrap_or_default() {
            let inside = from.is_none_or(|f| m.month.as_str() >= f)
                && to.is_none_or(|t| m.month.as_str() <= t);
            if inside {
                *months.entry(m.month.as_str()).or_default() += m.gpu_seconds;
            }
        }
        let total: u64 = months.values().sum();
        for (month, seconds) in months {
            rows.push(Row {
                workspace: ws.name_any(),
                tenant: ws.spec.tenant.name.clone(),
                tenant_kind: json_name(&ws.spec.tenant.kind),
                factory: ws.spec.factory.clone(),
                mode: mode.clone(),
                month: month.to_owned(),
                gpu_hours: gpu_hours(seconds),
                gpu_seconds: seconds,
            });
        }
        totals.push(Total {
            workspace: ws.name_any(),
            tenant: ws.spec.tenant.name.clone(),
            mode: mode.clone(),
            gpu_hours: gpu_hours(total),
            granted_gpu_hours: ws.spec.allocation.as_ref().map(|a| a.granted_gpu_hours()),
            used_gpu_hours: status
                .filter(|_| ws.spec.allocation.is_some())
                .map(|s| s.used_gpu_hours),
            start: ws.spec.allocation.as_ref().map(|a| a.start.clone()),
            end: ws.spec.allocation.as_ref().map(|a| a.end.clone()),
            state: status.map_or_else(|| "Unknown".to_owned(), |s| s.state.as_str().to_owned()),
        });
    }
    Report {
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        rows,
        workspaces: totals,
    }
}

/// The report as tables a person reads.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let period = match (&report.from, &report.to) {
        (None, None) => "every month".to_owned(),
        (from, to) => format!(
            "{} to {}",
            from.as_deref().unwrap_or("the first month"),
            to.as_deref().unwrap_or("the last month")
        ),
    };
    let _ = writeln!(out, "GPU-hours used, {period} (UTC)\n");
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.workspace.clone(),
                r.tenant.clone(),
                r.month.clone(),
                format!("{}", r.gpu_hours),
            ]
        })
        .collect();
    table(
        &mut out,
        "Per month",
        &["WORKSPACE", "TENANT", "MONTH", "GPU-HOURS"],
        &rows,
    );
    let totals: Vec<Vec<String>> = report
        .workspaces
        .iter()
        .map(|t| {
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            vec![
                t.workspace.clone(),
                if t.mode.is_empty() {
                    "-".to_owned()
                } else {
                    t.mode.clone()
                },
                format!("{}", t.gpu_hours),
                or_dash(
                    t.granted_gpu_hours
                        .map(|g| format!("{}/{g}", t.used_gpu_hours.unwrap_or(0.0))),
                ),
                or_dash(t.end.clone()),
                t.state.clone(),
            ]
        })
        .collect();
    table(
        &mut out,
        "Per workspace",
        &[
            "WORKSPACE",
            "MODE",
            "GPU-HOURS",
            "ALLOCATION USED",
            "ENDS",
            "STATE",
        ],
        &totals,
    );
    out
}

/// The rows as CSV, with a header.
pub fn csv(report: &Report) -> anyhow::Result<String> {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    for row in &report.rows {
        writer.serialize(row)?;
    }
    if report.rows.is_empty() {
        writer.write_record([
            "workspace",
            "tenant",
            "tenantKind",
            "factory",
            "mode",
            "month",
            "gpuHours",
            "gpuSeconds",
        ])?;
    }
    Ok(String::from_utf8(writer.into_inner()?)?)
}

async fn fetch() -> anyhow::Result<Vec<Workspace>> {
    let client = Client::try_default()
        .await
        .context("no cluster: set KUBECONFIG or a current kubeconfig context")?;
    Ok(Api::<Workspace>::all(client)
        .list(&ListParams::default())
        .await
        .context("listing Workspaces (are the fabbrica CRDs installed? `fabbrica crds | kubectl apply --server-side -f -`)")?
        .items)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (&args.from, &args.to)
        && from > to
    {
        anyhow::bail!("--from {from} is after --to {to}; valid: --from on or before --to");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let workspaces = runtime.block_on(fetch())?;
    let report = report(&workspaces, args.from.as_deref(), args.to.as_deref());
    let out = match args.output {
        Format::Text => text(&report),
        Format::Csv => csv(&report)?,
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSPACES: &str = r#"
- apiVersion: fabbrica.io/v1alpha1
  kind: Workspace
  metadata: {name: aurora}
  spec:
    factory: it4lia
    tenant: {name: Aurora Robotics, kind: startup}
    namespace: aurora
    allocation: {mode: fast-lane, gpuHours: 20000, start: "2026-01-01", end: "2026-03-31"}
  status:
    allocation:
      state: Open
      usedGpuHours: 3
      usedGpuSeconds: 10800
      runningGpus: 0
      months:
        - {month: "2026-01", pool: train, gpuSeconds: 3600}
        - {month: "2026-01", pool: nb, gpuSeconds: 1800}
        - {month: "2026-02", pool: train, gpuSeconds: 5400}
- apiVersion: fabbrica.io/v1alpha1
  kind: Workspace
  metadata: {name: lab}
  spec:
    factory: it4lia
    tenant: {name: Physics Lab, kind: research}
    namespace: lab
"#;

    fn workspaces() -> Vec<Workspace> {
        serde_saphyr::from_str(WORKSPACES).unwrap()
    }

    #[test]
    fn months_are_summed_over_pools_and_bounded_by_from_and_to() {
        let all = report(&workspaces(), None, None);
        let rows: Vec<_> = all
            .rows
            .iter()
            .map(|r| (r.month.as_str(), r.gpu_hours))
            .collect();
        assert_eq!(rows, [("2026-01", 1.5), ("2026-02", 1.5)]);
        assert_eq!(all.workspaces[0].gpu_hours, 3.0);
        assert_eq!(all.workspaces[0].granted_gpu_hours, Some(20000.0));
        assert_eq!(all.workspaces[1].state, "Unknown");
        let february = report(&workspaces(), Some("2026-02"), Some("2026-02"));
        assert_eq!(february.rows.len(), 1);
        assert_eq!(february.workspaces[0].gpu_hours, 1.5);
    }

    #[test]
    fn csv_has_one_row_per_workspace_and_month() {
        let out = csv(&report(&workspaces(), None, None)).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(
            lines[0],
            "workspace,tenant,tenantKind,factory,mode,month,gpuHours,gpuSeconds"
        );
        assert_eq!(
            lines[1],
            "aurora,Aurora Robotics,startup,it4lia,fast-lane,2026-01,1.5,5400"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn months_and_dates_are_read_as_months_and_anything_else_refused() {
        assert_eq!(month("2026-03").unwrap(), "2026-03");
        assert_eq!(month("2026-03-17").unwrap(), "2026-03");
        assert!(month("March").unwrap_err().contains("valid: a month"));
    }

    #[test]
    fn text_names_every_workspace_and_its_allocation() {
        let out = text(&report(&workspaces(), None, None));
        assert!(
            out.contains("aurora") && out.contains("fast-lane") && out.contains("3/20000"),
            "{out}"
        );
        assert!(out.contains("2026-03-31"), "{out}");
    }
}
