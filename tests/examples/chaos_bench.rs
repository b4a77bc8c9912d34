//! The chaos trial and the leader failover at full size, against the control plane of
//! `$KUBECONFIG`; the figures printed as Markdown table rows. Run it through `tests/bench-chaos`.
//!
//!   chaos_bench [NODES [SEED]]   (SEED also from FABBRICA_CHAOS_SEED; the clock's otherwise)

use std::time::Duration;

use fabbrica_tests::chaos::{self, Chaos, Fault};
use fabbrica_tests::client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(500);
    let seed = match args.next() {
        Some(seed) => seed.parse()?,
        None => chaos::seed()?,
    };
    let client = client().await?;
    let report = chaos::run(
        &client,
        &Chaos {
            nodes,
            kills: 5,
            max_gap: Duration::from_secs(8),
            quiet: Duration::from_secs(60),
            timeout: Duration::from_secs(900),
            seed,
        },
    )
    .await?;
    let failover = chaos::failover(&client, nodes, Duration::from_secs(900)).await?;
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(at, fault)| {
            let name = match fault {
                Fault::Kill => "SIGKILL",
                Fault::RestartApiServer => "API server restart",
                Fault::RestartEtcd => "etcd restart",
                Fault::Edit => "edit",
            };
            format!("{name} at {at:.1} s")
        })
        .collect();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| Nodes | {nodes} |");
    println!("| seed | {seed} |");
    println!("| faults | {} |", faults.join(", "));
    println!(
        "| undisturbed: start to converged | {:.1} s |",
        report.undisturbed.as_secs_f64()
    );
    println!(
        "| with the faults: start to converged | {:.1} s |",
        report.disturbed.as_secs_f64()
    );
    println!("| operator exits on its own | {} |", report.exits);
    println!("| result equals the undisturbed run's | yes |");
    println!(
        "| Nodes with their foreign label and taint | {0} of {0} |",
        report.nodes
    );
    println!(
        "| operator writes in 60 s of steady state (Nodes that changed readiness meanwhile) | {} ({}) |",
        report.steady_writes, report.readiness_changes
    );
    println!(
        "| failover: SIGKILL to the standby holding the Lease | {:.1} s |",
        failover.lease_taken.as_secs_f64()
    );
    println!(
        "| failover: SIGKILL to the edit reconciled by the standby | {:.1} s |",
        failover.reconciled.as_secs_f64()
    );
    println!(
        "| failover: writes of leader / standby; leader's last answered to standby's first | {} / {}; {:.1} s |",
        failover.writes.0,
        failover.writes.1,
        failover.gap.as_secs_f64()
    );
    Ok(())
}
