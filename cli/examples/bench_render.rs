//! Renders the embedded Gigafactory example (100,000 GPUs, its full cabling plan)
//! and writes it to a temporary directory, timing each phase. Run it with
//! `cargo run --release -p fabbrica --example bench_render`, under
//! `/usr/bin/time -v` for the peak memory; results go to docs/BENCHMARKS.md.

use std::time::Instant;

use fabbrica::blueprint_file::parse;
use fabbrica::commands::blueprint::render::{Example, render};

fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    let blueprint = parse(Example::Gigafactory.text())?;
    let valid = fabbrica_site::validate(&blueprint).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = fabbrica_site::plan(&valid);
    let planned = start.elapsed();
    let files = render(
        &valid,
        &plan,
        valid.max_nodes(),
        "https://git.example.com/giga-eu/site.git",
        |_| {},
    )?;
    let rendered = start.elapsed();
    let out = std::env::temp_dir().join(format!("fabbrica-bench-{}", std::process::id()));
    for file in &files {
        let path = out.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("files live in the output directory"))?;
        std::fs::write(&path, &file.bytes)?;
    }
    let written = start.elapsed();
    std::fs::remove_dir_all(&out)?;
    let bytes: usize = files.iter().map(|f| f.bytes.len()).sum();
    let cables = plan.compute_fabric.node_leaf_cables
        + plan.compute_fabric.leaf_spine_cables
        + plan.compute_fabric.spine_core_cables;
    println!(
        "site {}: {} GPUs, {} nodes, {cables} cables",
        plan.site, plan.gpus, plan.nodes
    );
    println!("files: {}, bytes: {bytes}", files.len());
    println!(
        "plan: {:.3} s, render: {:.3} s, write: {:.3} s",
        planned.as_secs_f64(),
        (rendered - planned).as_secs_f64(),
        (written - rendered).as_secs_f64()
    );
    println!("total: {:.3} s", written.as_secs_f64());
    Ok(())
}
