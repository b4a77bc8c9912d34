//! Faults during a convergence, at a small size (the full size is `tests/bench-chaos`): the
//! operator binary killed with SIGKILL at seeded moments, the API server and etcd restarted,
//! and the Factory edited mid-way. The result must equal an undisturbed run's, every foreign
//! label and taint must survive, and once converged the operator must write nothing.
//!
//! The seed is printed; `FABBRICA_CHAOS_SEED=N` repeats a run. This file is one test on
//! purpose: it restarts the API server and etcd, which other tests in the same binary would feel.

use std::time::Duration;

use fabbrica_tests::chaos::{self, Chaos};
use fabbrica_tests::client;

#[tokio::test]
async fn faults_during_convergence_end_in_the_undisturbed_state() -> anyhow::Result<()> {
    let client = client().await?;
    // The trial fails naming what differs, what was lost or what was written in steady state.
    let report = chaos::run(
        &client,
        &Chaos {
            nodes: 48,
            kills: 3,
            max_gap: Duration::from_secs(3),
            quiet: Duration::from_secs(20),
            timeout: Duration::from_secs(120),
            seed: chaos::seed()?,
        },
    )
    .await?;
    eprintln!("chaos: {report:?}");
    Ok(())
}
