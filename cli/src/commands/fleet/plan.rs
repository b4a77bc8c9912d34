//! `fabbrica fleet plan`: a fleet's sizing rolled up by site, by country and in all.
//! `-o json` is a stable interface (`fabbrica_site::fleet::FleetPlan`); `-o csv` one row per
//! site, country and the total, for spreadsheets.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fabbrica_site::fleet::{FleetPlan, Totals, roll_up};
use fabbrica_site::grouped;

use crate::fleet_file::{assemble, base_dir, load, or_report, plan};
use crate::output::{Output, formatted, table};

/// Size every site of a fleet and roll them up by site and country.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet file (YAML, kind Fleet).
    #[arg(value_name = "FLEET")]
    pub fleet: PathBuf,
    /// The most GPU Nodes one cluster holds, for every site; by default each site's own
    /// (`spec.cells.maxNodes`, 5000).
    #[arg(long, value_name = "NODES", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_nodes_per_cluster: Option<u32>,
    /// Output format: text for people, csv for spreadsheets, json or yaml for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

/// `fabbrica fleet plan`'s output formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for people.
    #[default]
    Text,
    /// Comma-separated values: one row per site, per country and the total.
    Csv,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// The roll-up of a fleet file, or every problem on stderr.
pub fn fleet_plan(
    path: &std::path::Path,
    max_nodes: Option<u32>,
) -> anyhow::Result<Option<FleetPlan>> {
    let fleet = load(path)?;
    let Some(sites) = or_report(path, assemble(&fleet, &base_dir(path))) else {
        return Ok(None);
    };
    let Some(planned) = or_report(path, plan(&sites, max_nodes)) else {
        return Ok(None);
    };
    let rows: Vec<_> = planned
        .iter()
        .map(|p| (p.site, &p.plan, p.cells.len() as u32))
        .collect();
    Ok(Some(roll_up(&fleet.spec.name, &rows)))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(plan) = fleet_plan(&args.fleet, args.max_nodes_per_cluster)? else {
        return Ok(ExitCode::from(1));
    };
    let out = match args.output {
        Format::Text => text(&plan),
        Format::Csv => csv(&plan)?,
        Format::Json => formatted(Output::Json, &plan, text)?,
        Format::Yaml => formatted(Output::Yaml, &plan, text)?,
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn kw(x: f64) -> String {
    grouped(x.round() as u64)
}

fn figures(t: &Totals) -> Vec<String> {
    vec![
        grouped(t.clusters.into()),
        grouped(t.gpus),
        grouped(t.nodes),
        grouped(t.switches),
        grouped(t.racks),
        kw(t.it_kw),
        kw(t.facility_kw),
    ]
}

const FIGURES: [&str; 7] = [
    "CLUSTERS",
    "GPUS",
    "NODES",
    "SWITCHES",
    "RACKS",
    "IT KW",
    "FACILITY KW",
];

/// The tables a person reads.
pub fn text(plan: &FleetPlan) -> String {
    let mut out = String::new();
    let t = &plan.total;
    let _ = writeln!(
        out,
        "Fleet {}: {} sites in {} countries, {} clusters, {} GPUs on {} nodes, {} MW facility power\n",
        plan.fleet,
        t.sites,
        plan.countries.len(),
        grouped(t.clusters.into()),
        grouped(t.gpus),
        grouped(t.nodes),
        (t.facility_kw / 100.0).round() / 10.0
    );
    let mut header = vec!["SITE", "COUNTRY", "ROLE", "SYSTEM", "TENANTS"];
    header.extend(FIGURES);
    let rows: Vec<Vec<String>> = plan
        .sites
        .iter()
        .map(|s| {
            let mut row = vec![
                s.site.clone(),
                s.country.clone(),
                s.role.as_str().to_owned(),
                s.system.clone(),
                s.tenants.to_string(),
            ];
            row.extend(figures(&s.totals));
            row
        })
        .collect();
    table(&mut out, "By site", &header, &rows);
    let mut header = vec!["COUNTRY", "SITES"];
    header.extend(FIGURES);
    let mut rows: Vec<Vec<String>> = plan
        .countries
        .iter()
        .map(|c| {
            let mut row = vec![c.country.clone(), c.totals.sites.to_string()];
            row.extend(figures(&c.totals));
            row
        })
        .collect();
    let mut total = vec!["total".to_owned(), t.sites.to_string()];
    total.extend(figures(t));
    rows.push(total);
    table(&mut out, "By country", &header, &rows);
    out
}

/// One row per site, per country and the total, with a header.
pub fn csv(plan: &FleetPlan) -> anyhow::Result<String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record([
        "scope",
        "name",
        "country",
        "role",
        "system",
        "tenants",
        "sites",
        "clusters",
        "gpus",
        "nodes",
        "switches",
        "racks",
        "itKw",
        "facilityKw",
    ])?;
    let mut row = |scope: &str,
                   name: &str,
                   country: &str,
                   role: &str,
                   system: &str,
                   tenants: String,
                   t: &Totals| {
        w.write_record([
            scope.to_owned(),
            name.to_owned(),
            country.to_owned(),
            role.to_owned(),
            system.to_owned(),
            tenants,
            t.sites.to_string(),
            t.clusters.to_string(),
            t.gpus.to_string(),
            t.nodes.to_string(),
            t.switches.to_string(),
            t.racks.to_string(),
            t.it_kw.to_string(),
            t.facility_kw.to_string(),
        ])
    };
    for s in &plan.sites {
        row(
            "site",
            &s.site,
            &s.country,
            s.role.as_str(),
            &s.system,
            s.tenants.to_string(),
            &s.totals,
        )?;
    }
    for c in &plan.countries {
        row(
            "country",
            &c.country,
            &c.country,
            "",
            "",
            String::new(),
            &c.totals,
        )?;
    }
    row("total", &plan.fleet, "", "", "", String::new(), &plan.total)?;
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> FleetPlan {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../blueprints/examples/fleet-europe.yaml");
        fleet_plan(&path, None)
            .unwrap()
            .expect("the example is valid")
    }

    #[test]
    fn text_snapshot_of_the_example_fleet() {
        insta::assert_snapshot!(text(&example()));
    }

    #[test]
    fn csv_snapshot_of_the_example_fleet() {
        insta::assert_snapshot!(csv(&example()).unwrap());
    }

    #[test]
    fn json_carries_the_stable_keys() {
        let value = serde_json::to_value(example()).unwrap();
        for pointer in [
            "/fleet",
            "/sites/0/site",
            "/sites/0/country",
            "/sites/0/role",
            "/sites/0/gpus",
            "/sites/0/clusters",
            "/sites/0/switches",
            "/sites/0/racks",
            "/sites/0/facilityKw",
            "/countries/0/country",
            "/countries/0/gpus",
            "/total/gpus",
            "/total/nodes",
        ] {
            assert!(value.pointer(pointer).is_some(), "{pointer} missing");
        }
    }
}
