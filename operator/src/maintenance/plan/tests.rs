//! The state machine on small fleets: waves of whole domains, the budget counted from the
//! cluster, PDB holds, timeouts, the failure threshold, pause and cancel, and a resumed run.

use std::collections::{BTreeMap, HashMap};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{MaintenanceNode, MaintenanceSpec, WaveStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(1_000_000 + second).unwrap())
}

fn spec(yaml: &str) -> MaintenanceSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

/// `count` ready Nodes of pool `train`, 4 to a leaf group.
fn fleet(count: usize) -> HashMap<String, NodeView> {
    (0..count)
        .map(|i| {
            let name = format!("n{i:02}");
            let labels = BTreeMap::from([
                (labels::POOL.to_owned(), "train".to_owned()),
                (labels::LEAF_GROUP.to_owned(), format!("su01-lg{}", i / 4)),
            ]);
            let view = NodeView {
                name: name.clone(),
                labels,
                ready: true,
                ..NodeView::default()
            };
            (name, view)
        })
        .collect()
}

fn plan(nodes: &HashMap<String, NodeView>, budget: u32) -> (Vec<WaveStatus>, Vec<MaintenanceNode>) {
    let budgets = BTreeMap::from([("train".to_owned(), budget)]);
    let targets = targets(
        nodes.values(),
        &budgets,
        &BTreeMap::new(),
        Some(labels::LEAF_GROUP),
    );
    waves(&targets, budget)
}

/// Carries out a step's cordons and releases on the fleet, as the API server would.
fn enact(nodes: &mut HashMap<String, NodeView>, effects: &[Effect], name: &str) {
    for effect in effects {
        match effect {
            Effect::Cordon(n) => {
                let view = nodes.get_mut(n).unwrap();
                if !view.unschedulable {
                    view.unschedulable = true;
                    view.held_by = Some(name.to_owned());
                }
            }
            Effect::Uncordon(n) => {
                let view = nodes.get_mut(n).unwrap();
                if view.held_by.as_deref() == Some(name) {
                    view.unschedulable = false;
                    view.held_by = None;
                }
            }
            _ => {}
        }
    }
}

fn out(nodes: &HashMap<String, NodeView>) -> usize {
    nodes.values().filter(|n| n.out_of_service()).count()
}

fn phases_of(nodes: &[MaintenanceNode]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for n in nodes {
        *count.entry(n.phase.clone()).or_default() += 1;
    }
    count
}

struct Run {
    spec: MaintenanceSpec,
    budgets: BTreeMap<String, u32>,
    nodes: HashMap<String, NodeView>,
    stored: Vec<MaintenanceNode>,
}

impl Run {
    fn new(spec: MaintenanceSpec, fleet: HashMap<String, NodeView>, budget: u32) -> Self {
        let (_, stored) = plan(&fleet, budget);
        Self {
            spec,
            budgets: BTreeMap::from([("train".to_owned(), budget)]),
            nodes: fleet,
            stored,
        }
    }

    /// One step at `second`, with every draining Node's drain as `drain` says.
    fn step(&mut self, second: i64, drain: impl Fn(&str) -> Drain) -> Step {
        let drains: HashMap<String, Drain> = self
            .stored
            .iter()
            .filter(|n| n.phase == phase::DRAINING)
            .map(|n| (n.name.clone(), drain(&n.name)))
            .collect();
        let now = at(second);
        let step = step(
            &self.stored,
            &Input {
                name: "m",
                spec: &self.spec,
                budgets: &self.budgets,
                nodes: &self.nodes,
                drains: &drains,
                now: &now,
            },
        );
        enact(&mut self.nodes, &step.effects, "m");
        self.stored = step.nodes.clone();
        step
    }

    /// The agent reports done on every Working Node.
    fn agent_done(&mut self) {
        for n in self.stored.iter().filter(|n| n.phase == phase::WORKING) {
            self.nodes.get_mut(&n.name).unwrap().labels.insert(
                fabbrica_crds::v1alpha1::GPU_DRIVER_UPGRADE_STATE.to_owned(),
                "upgrade-done".to_owned(),
            );
        }
    }
}

fn empty(_: &str) -> Drain {
    Drain::default()
}

#[test]
fn waves_hold_whole_domains_and_pack_small_ones_up_to_the_budget() {
    let nodes = fleet(12);
    let (packed, planned) = plan(&nodes, 8);
    // Three leaf groups of 4: two fit in a wave of 8, the third starts the next.
    let domains: Vec<Vec<String>> = packed.iter().map(|w| w.domains.clone()).collect();
    assert_eq!(domains, [vec!["su01-lg0", "su01-lg1"], vec!["su01-lg2"]]);
    assert_eq!(planned.len(), 12);
    // A domain larger than the budget is a wave of its own.
    let (waves, _) = plan(&nodes, 2);
    assert_eq!(waves.len(), 3);
    assert!(waves.iter().all(|w| w.nodes == 4 && w.domains.len() == 1));
    // Every Node of a domain is in the same wave.
    for n in &planned {
        let domain = &nodes[&n.name].labels[labels::LEAF_GROUP];
        let wave = &packed[n.wave as usize];
        assert!(wave.domains.contains(domain), "{n:?}");
    }
}

#[test]
fn a_nodes_without_the_domain_label_is_its_own_domain_and_the_selector_narrows() {
    let mut nodes = fleet(3);
    nodes
        .get_mut("n02")
        .unwrap()
        .labels
        .remove(labels::LEAF_GROUP);
    nodes
        .get_mut("n00")
        .unwrap()
        .labels
        .insert("rack".into(), "r1".into());
    let budgets = BTreeMap::from([("train".to_owned(), 1)]);
    let all = targets(
        nodes.values(),
        &budgets,
        &BTreeMap::new(),
        Some(labels::LEAF_GROUP),
    );
    assert_eq!(all.iter().find(|t| t.name == "n02").unwrap().domain, "n02");
    let selector = BTreeMap::from([("rack".to_owned(), "r1".to_owned())]);
    let some = targets(
        nodes.values(),
        &budgets,
        &selector,
        Some(labels::LEAF_GROUP),
    );
    assert_eq!(some.len(), 1);
    let other_pool = BTreeMap::from([("nb".to_owned(), 1)]);
    assert!(targets(nodes.values(), &other_pool, &BTreeMap::new(), None).is_empty());
}

#[test]
fn a_driver_upgrade_never_has_more_nodes_out_than_the_budget_and_finishes() {
    let mut run = Run::new(
        spec("{factory: f, action: {type: agentSignal}}"),
        fleet(16),
        3,
    );
    // One Node is NotReady already: it counts against the budget.
    run.nodes.get_mut("n15").unwrap().ready = false;
    let mut second = 0;
    while run.stored.iter().any(|n| !terminal(&n.phase)) {
        second += 1;
        assert!(second < 200, "no progress: {:?}", phases_of(&run.stored));
        run.step(second, empty);
        assert!(out(&run.nodes) <= 3, "{} out at {second}", out(&run.nodes));
        run.agent_done();
        if second == 40 {
            run.nodes.get_mut("n15").unwrap().ready = true;
        }
    }
    assert_eq!(
        phases_of(&run.stored),
        BTreeMap::from([("Done".into(), 16)])
    );
    assert!(
        run.nodes.values().all(|n| !n.unschedulable),
        "every Node is uncordoned"
    );
}

#[test]
fn waves_run_in_order_and_a_wave_starts_only_when_the_last_finished() {
    let mut run = Run::new(
        spec("{factory: f, action: {type: agentSignal}}"),
        fleet(8),
        4,
    );
    let first = run.step(1, empty);
    let cordoned: Vec<&MaintenanceNode> = first
        .nodes
        .iter()
        .filter(|n| n.phase == phase::CORDONED)
        .collect();
    assert_eq!(cordoned.len(), 4);
    assert!(cordoned.iter().all(|n| n.wave == 0));
    assert!(first.effects.contains(&Effect::Notify("n00".into())));
    assert!(
        first
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Event { reason, .. } if *reason == events::WAVE_STARTED))
    );
    run.step(2, empty); // draining
    run.step(3, empty); // working
    let step = run.step(4, empty);
    assert!(
        step.nodes
            .iter()
            .all(|n| n.wave == 0 || n.phase == phase::PENDING)
    );
    assert_eq!(step.held, None);
}

#[test]
fn a_pdb_that_refuses_an_eviction_holds_the_node_and_says_why() {
    let mut run = Run::new(spec("{factory: f, action: {type: drain}}"), fleet(4), 4);
    run.step(1, empty);
    let blocked = |_: &str| {
        Drain {
        remaining: 1,
        blocked: Some("eviction of Pod t/p refused: Cannot evict pod as it would violate the pod's disruption budget.".into()),
    }
    };
    run.step(2, blocked); // draining
    let first = run.step(3, blocked);
    assert!(
        first.effects.iter().any(
            |e| matches!(e, Effect::Event { reason, .. } if *reason == events::EVICTION_BLOCKED)
        )
    );
    let step = run.step(4, blocked);
    let node = &step.nodes[0];
    assert_eq!(node.phase, phase::DRAINING);
    assert!(
        node.message
            .as_deref()
            .unwrap()
            .contains("disruption budget")
    );
    // The Event is published once, not on every look.
    assert!(
        !step.effects.iter().any(
            |e| matches!(e, Effect::Event { reason, .. } if *reason == events::EVICTION_BLOCKED)
        )
    );
}

#[test]
fn a_drained_node_waits_for_the_done_label_naming_this_maintenance() {
    let mut run = Run::new(spec("{factory: f, action: {type: drain}}"), fleet(1), 1);
    run.step(1, empty);
    run.step(2, empty);
    run.step(3, empty);
    assert_eq!(run.stored[0].phase, phase::WORKING);
    let labels = &mut run.nodes.get_mut("n00").unwrap().labels;
    labels.insert(labels::MAINTENANCE_DONE.into(), "another".into());
    run.step(4, empty);
    assert_eq!(run.stored[0].phase, phase::WORKING);
    let labels = &mut run.nodes.get_mut("n00").unwrap().labels;
    labels.insert(labels::MAINTENANCE_DONE.into(), "m".into());
    let step = run.step(5, empty);
    assert_eq!(run.stored[0].phase, phase::DONE);
    assert!(step.effects.contains(&Effect::Uncordon("n00".into())));
}

#[test]
fn evictions_wait_for_the_notice() {
    let mut run = Run::new(
        spec("{factory: f, action: {type: drain}, noticeSeconds: 30}"),
        fleet(1),
        1,
    );
    run.step(0, empty);
    run.step(29, empty);
    assert_eq!(run.stored[0].phase, phase::CORDONED);
    run.step(30, empty);
    assert_eq!(run.stored[0].phase, phase::DRAINING);
}

#[test]
fn a_timeout_fails_the_node_and_the_threshold_pauses_with_the_node_left_cordoned() {
    let mut run = Run::new(
        spec("{factory: f, action: {type: agentSignal}, nodeTimeoutSeconds: 10}"),
        fleet(8),
        2,
    );
    run.step(0, empty);
    run.step(1, empty);
    run.step(2, empty);
    // The agent finishes one Node, never the other.
    let working: Vec<String> = run
        .stored
        .iter()
        .filter(|n| n.phase == phase::WORKING)
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(working.len(), 2);
    run.nodes
        .get_mut(&working[0])
        .unwrap()
        .labels
        .insert(GPU_DRIVER_UPGRADE_STATE_LABEL.into(), "upgrade-done".into());
    run.step(3, empty);
    let step = run.step(11, empty);
    let failed: Vec<&MaintenanceNode> = step
        .nodes
        .iter()
        .filter(|n| n.phase == phase::FAILED)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .message
            .as_deref()
            .unwrap()
            .contains("within 10 s")
    );
    // Paused at the threshold: nothing more starts, and the failed Node stays cordoned.
    let before = phases_of(&run.stored);
    run.step(12, empty);
    assert_eq!(phases_of(&run.stored), before);
    assert!(run.nodes[&working[1]].unschedulable);
    // Raising the threshold resumes: the Node held while draining goes on (the failed one still
    // counts against the budget of 2, so no further Node starts yet).
    run.spec.failure_threshold = 2;
    run.step(13, empty);
    assert_eq!(phases_of(&run.stored)["Working"], 1);
    assert_eq!(out(&run.nodes), 2);
}

const GPU_DRIVER_UPGRADE_STATE_LABEL: &str = fabbrica_crds::v1alpha1::GPU_DRIVER_UPGRADE_STATE;

#[test]
fn an_agent_failure_fails_the_node_and_a_request_is_written_once_drained() {
    let mut run = Run::new(
        spec(
            "{factory: f, action: {type: agentSignal, signal: {request: upgrade-required}}, failureThreshold: 5}",
        ),
        fleet(1),
        1,
    );
    run.step(1, empty);
    run.step(2, empty);
    let step = run.step(3, empty);
    assert!(step.effects.contains(&Effect::Signal {
        node: "n00".into(),
        label: GPU_DRIVER_UPGRADE_STATE_LABEL.into(),
        value: "upgrade-required".into(),
    }));
    run.nodes.get_mut("n00").unwrap().labels.insert(
        GPU_DRIVER_UPGRADE_STATE_LABEL.into(),
        "upgrade-failed".into(),
    );
    run.step(4, empty);
    assert_eq!(run.stored[0].phase, phase::FAILED);
}

#[test]
fn a_reboot_is_done_when_the_node_comes_back_with_a_new_boot_id() {
    let mut run = Run::new(spec("{factory: f, action: {type: reboot}}"), fleet(1), 1);
    run.nodes.get_mut("n00").unwrap().boot_id = Some("boot-1".into());
    run.step(1, empty);
    run.step(2, empty);
    let step = run.step(3, empty);
    assert!(step.effects.contains(&Effect::RequestReboot("n00".into())));
    assert_eq!(run.stored[0].boot_id.as_deref(), Some("boot-1"));
    run.nodes.get_mut("n00").unwrap().ready = false;
    run.step(4, empty);
    assert_eq!(run.stored[0].phase, phase::WORKING);
    let node = run.nodes.get_mut("n00").unwrap();
    node.boot_id = Some("boot-2".into());
    run.step(5, empty);
    assert_eq!(run.stored[0].phase, phase::WORKING, "not Ready yet");
    run.nodes.get_mut("n00").unwrap().ready = true;
    run.step(6, empty);
    assert_eq!(run.stored[0].phase, phase::DONE);
}

#[test]
fn pause_stops_new_nodes_and_evictions_and_cancel_releases_what_it_holds() {
    let mut run = Run::new(spec("{factory: f, action: {type: drain}}"), fleet(8), 2);
    run.step(1, empty);
    run.spec.paused = true;
    let paused = run.step(2, empty);
    assert!(paused.effects.is_empty(), "{:?}", paused.effects);
    assert_eq!(phases_of(&run.stored)["Cordoned"], 2);
    run.spec.cancel = true;
    let cancelled = run.step(3, empty);
    assert_eq!(
        phases_of(&cancelled.nodes),
        BTreeMap::from([("Cancelled".into(), 2), ("Skipped".into(), 6)])
    );
    assert_eq!(out(&run.nodes), 0);
}

#[test]
fn a_resumed_run_counts_nodes_it_cordoned_before_a_crash_and_stays_within_the_budget() {
    let mut run = Run::new(
        spec("{factory: f, action: {type: agentSignal}}"),
        fleet(8),
        2,
    );
    // A first step cordoned two Nodes, and the status write was lost in a crash.
    let lost = run.step(1, empty);
    assert_eq!(out(&run.nodes), 2);
    run.stored = plan(&run.nodes, 2).1;
    let resumed = run.step(2, empty);
    assert_eq!(out(&run.nodes), 2, "no third Node out");
    let started: Vec<&str> = resumed
        .nodes
        .iter()
        .filter(|n| n.phase == phase::CORDONED)
        .map(|n| n.name.as_str())
        .collect();
    let before: Vec<&str> = lost
        .nodes
        .iter()
        .filter(|n| n.phase == phase::CORDONED)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(started, before, "the same Nodes are taken up again");
}

#[test]
fn a_vanished_node_fails() {
    let mut run = Run::new(
        spec("{factory: f, action: {type: drain}, failureThreshold: 9}"),
        fleet(2),
        2,
    );
    run.step(1, empty);
    run.nodes.remove("n01");
    run.step(2, empty);
    let node = run.stored.iter().find(|n| n.name == "n01").unwrap();
    assert_eq!(node.phase, phase::FAILED);
}
