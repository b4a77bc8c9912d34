//! Writes the fleet of the planning benchmark: 60 sites in 16 countries totalling 3,000,000
//! GPUs (30 Gigafactory-class sites of 80,000 GB200 NVL72 GPUs on XDR, 30 AI Factories of
//! 20,000 DGX B200 GPUs on NDR), 20 tenants with workspaces at three sites each, every site
//! inline. `tests/bench-fleet` writes it and times `fabbrica fleet plan` on it; results go to
//! docs/BENCHMARKS.md.
//!
//! `cargo run --release -p fabbrica --example bench_fleet -- FILE`

use std::fmt::Write as _;

const COUNTRIES: [&str; 16] = [
    "AT", "BE", "BG", "CZ", "DE", "DK", "ES", "FI", "FR", "GR", "IT", "LU", "NL", "PL", "PT", "SE",
];

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench_fleet FILE"))?;
    let mut y = String::from(
        "apiVersion: fabbrica.io/v1alpha1\nkind: Fleet\nspec:\n  name: bench\n  notebooks:\n    images: [{name: pytorch, image: nvcr.io/nvidia/pytorch:24.10-py3}]\n    profiles: [{name: one-gpu, pool: gpu, gpus: 1, cpu: '16', memory: 128Gi}]\n  sites:\n",
    );
    let mut total = 0u64;
    let mut names = Vec::new();
    for i in 0..60 {
        let giga = i % 2 == 0;
        let (tier, system, gpus, fabric) = if giga {
            ("gigafactory", "gb200-nvl72", 80_000, "xdr")
        } else {
            ("aiFactory", "dgx-b200", 20_000, "ndr")
        };
        total += gpus;
        let name = format!("site-{i:02}");
        let _ = write!(
            y,
            "    - blueprint:\n        site: {{name: {name}, country: {}, tier: {tier}}}\n        compute: {{system: {system}, gpus: {gpus}}}\n        computeFabric: {{generation: {fabric}}}\n        storage:\n          tiers:\n            - {{name: scratch, role: scratch, provisioner: csi.weka.io, capacity: 50Pi}}\n            - {{name: project, role: project, provisioner: csi.weka.io, capacity: 100Pi}}\n",
            COUNTRIES[i % COUNTRIES.len()]
        );
        names.push(name);
    }
    assert_eq!(total, 3_000_000);
    y.push_str("  tenants:\n");
    for t in 0..20 {
        let _ = write!(
            y,
            "    - name: tenant-{t:02}\n      displayName: Tenant {t}\n      kind: research\n      workspaces:\n"
        );
        for k in 0..3 {
            let _ = writeln!(
                y,
                "        - {{site: {}, gpus: 1000, storage: [{{tier: project, capacity: 100Ti}}]}}",
                names[(t * 3 + k) % names.len()]
            );
        }
    }
    std::fs::write(&path, y)?;
    println!("wrote {path}: 60 sites, {total} GPUs");
    Ok(())
}
