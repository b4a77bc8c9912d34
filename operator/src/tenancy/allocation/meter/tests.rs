//! The accounting on its own: what a Pod held, and a ledger that counts each finished Pod once.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A Pod asking for `gpus`, with `status` as its kubelet reports it.
fn pod(uid: &str, gpus: u64, status: serde_json::Value, extra: serde_json::Value) -> Pod {
    let mut pod = json!({
        "metadata": {"name": format!("p-{uid}"), "namespace": "ws", "uid": uid,
                     "finalizers": [POD_FINALIZER]},
        "spec": {
            "nodeSelector": {"fabbrica.io/pool": "train"},
            "containers": [{"name": "main", "image": "x",
                            "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}],
        },
        "status": status,
    });
    if let Some(meta) = extra.get("metadata") {
        for (k, v) in meta.as_object().unwrap() {
            pod["metadata"][k] = v.clone();
        }
    }
    serde_json::from_value(pod).unwrap()
}

fn running(since: &str) -> serde_json::Value {
    json!({"phase": "Running", "startTime": since,
           "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": true,
                                  "restartCount": 0, "state": {"running": {"startedAt": since}}}]})
}

fn succeeded(from: &str, to: &str) -> serde_json::Value {
    json!({"phase": "Succeeded", "startTime": from,
           "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false,
                                  "restartCount": 0,
                                  "state": {"terminated": {"exitCode": 0, "startedAt": from, "finishedAt": to}}}]})
}

#[test]
fn a_pod_holds_its_containers_gpus_or_its_largest_init_container() {
    let mut p = pod("a", 2, json!({}), json!({}));
    let spec = p.spec.as_mut().unwrap();
    spec.containers.push(spec.containers[0].clone());
    assert_eq!(pod_gpus(&p), 4);
    let mut init = p.spec.as_ref().unwrap().containers[0].clone();
    init.resources
        .as_mut()
        .unwrap()
        .limits
        .as_mut()
        .unwrap()
        .insert(
            "nvidia.com/gpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("8".into()),
        );
    p.spec.as_mut().unwrap().init_containers = Some(vec![init]);
    assert_eq!(pod_gpus(&p), 8);
    let cpu_only: Pod = serde_json::from_value(json!({
        "metadata": {"name": "c", "uid": "c"},
        "spec": {"containers": [{"name": "m", "image": "x"}]},
    }))
    .unwrap();
    assert_eq!(pod_facts(&cpu_only, at("2026-12-01T00:00:00Z")), None);
}

#[test]
fn pods_run_from_their_start_and_end_at_their_last_termination_or_deletion() {
    let now = at("2026-12-01T12:00:00Z");
    let facts = pod_facts(
        &pod("a", 2, running("2026-12-01T11:00:00Z"), json!({})),
        now,
    )
    .unwrap();
    assert_eq!(
        facts.phase,
        Held::Running {
            start: at("2026-12-01T11:00:00Z")
        }
    );
    assert_eq!(
        (facts.gpus, facts.pool.as_str(), facts.finalizer),
        (2, "train", true)
    );

    let done = pod(
        "b",
        1,
        succeeded("2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z"),
        json!({}),
    );
    assert_eq!(
        pod_facts(&done, now).unwrap().phase,
        Held::Finished {
            start: Some(at("2026-12-01T10:00:00Z")),
            end: at("2026-12-01T10:30:00Z")
        }
    );

    // Deleted while running, no termination reported: it ended at its deletion timestamp, once
    // that has passed; before, it is still running.
    let deleted = |when: &str| {
        pod(
            "c",
            1,
            running("2026-12-01T11:00:00Z"),
            json!({"metadata": {"deletionTimestamp": when}}),
        )
    };
    assert_eq!(
        pod_facts(&deleted("2026-12-01T11:59:00Z"), now)
            .unwrap()
            .phase,
        Held::Finished {
            start: Some(at("2026-12-01T11:00:00Z")),
            end: at("2026-12-01T11:59:00Z")
        }
    );
    assert_eq!(
        pod_facts(&deleted("2026-12-01T12:00:30Z"), now)
            .unwrap()
            .phase,
        Held::Running {
            start: at("2026-12-01T11:00:00Z")
        }
    );
    let pending = pod("d", 1, json!({"phase": "Pending"}), json!({}));
    assert_eq!(pod_facts(&pending, now).unwrap().phase, Held::NotStarted);
}

#[test]
fn gpu_seconds_split_by_utc_day_add_up_to_the_whole() {
    let parts = split_by_day(2, at("2026-11-30T23:59:00Z"), at("2026-12-01T00:00:30Z"));
    let days: Vec<_> = parts.iter().map(|(d, s)| (d.to_string(), *s)).collect();
    assert_eq!(
        days,
        [("2026-11-30".into(), 120), ("2026-12-01".into(), 60)]
    );
    assert!(split_by_day(4, at("2026-12-01T00:00:10Z"), at("2026-12-01T00:00:10Z")).is_empty());
}

fn facts(pods: &[Pod], now: &str) -> Vec<PodFacts> {
    pods.iter().filter_map(|p| pod_facts(p, at(now))).collect()
}

#[test]
fn a_finished_pod_is_counted_once_however_often_it_is_settled() {
    let a = pod(
        "a",
        2,
        succeeded("2026-12-01T10:00:00Z", "2026-12-01T10:00:10Z"),
        json!({}),
    );
    let b = pod("b", 1, running("2026-12-01T10:00:00Z"), json!({}));
    let listed = facts(&[a.clone(), b.clone()], "2026-12-01T10:01:00Z");
    let first = settle(&Ledger::default(), &listed);
    assert_eq!(first.ledger.total(), 20);
    assert_eq!(first.ledger.accounted, 1);
    assert_eq!(first.release, ["p-a"]);
    assert_eq!(first.running.len(), 1);
    // The operator stopped after writing the ledger, before releasing the Pod: the next pass
    // sees the same Pod, still with its finalizer, and counts nothing again.
    let again = settle(&first.ledger, &listed);
    assert_eq!(again.ledger, first.ledger);
    assert_eq!(again.release, ["p-a"]);
    // Released and then deleted: its entry goes, its GPU-seconds stay.
    let later = facts(&[b], "2026-12-01T10:02:00Z");
    let gone = settle(&again.ledger, &later);
    assert!(gone.ledger.pods.is_empty());
    assert_eq!(gone.ledger.total(), 20);
    assert_eq!(gone.ledger.days["2026-12-01"]["train"], 20);
}

#[test]
fn a_pod_that_finished_unseen_and_without_the_finalizer_is_still_counted_and_adopted_otherwise() {
    let mut done = pod(
        "a",
        3,
        succeeded("2026-12-01T10:00:00Z", "2026-12-01T10:00:05Z"),
        json!({}),
    );
    done.metadata.finalizers = None;
    let mut fresh = pod("b", 1, running("2026-12-01T10:00:00Z"), json!({}));
    fresh.metadata.finalizers = None;
    let settled = settle(
        &Ledger::default(),
        &facts(&[done, fresh], "2026-12-01T10:01:00Z"),
    );
    assert_eq!(settled.ledger.total(), 15);
    assert!(settled.release.is_empty());
    assert_eq!(settled.adopt, ["p-b"]);
}

#[test]
fn usage_adds_the_running_pods_up_to_now_per_month_and_pool() {
    let a = pod(
        "a",
        2,
        succeeded("2026-11-30T23:59:50Z", "2026-12-01T00:00:10Z"),
        json!({}),
    );
    let b = pod("b", 4, running("2026-12-01T00:00:00Z"), json!({}));
    let settled = settle(&Ledger::default(), &facts(&[a, b], "2026-12-01T00:01:00Z"));
    let usage = usage(
        &settled.ledger,
        &settled.running,
        at("2026-12-01T00:01:00Z"),
    );
    assert_eq!(usage.running_gpus, 4);
    assert_eq!(usage.between(None, None), 40 + 240);
    assert_eq!(usage.between(Some("2026-12-01"), None), 20 + 240);
    let months: Vec<_> = usage
        .months()
        .into_iter()
        .map(|m| (m.month, m.gpu_seconds))
        .collect();
    assert_eq!(months, [("2026-11".into(), 20), ("2026-12".into(), 260)]);
    assert_eq!(usage.pools()[0].used_gpu_seconds, 280);
}
