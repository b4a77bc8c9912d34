//! Node health, run by the Factory controller after it labelled the pools' Nodes: each Node of a
//! pool with `validation` is validated by a Job before it takes tenants, quarantined when it
//! fails or loses a GPU, and returned after a passing run; and the discovered fabric placement
//! is compared with the declared one ([`drift`]).
//!
//! [`plan`], [`build`] and [`drift`] are pure; this module does the reads and writes. Node marks
//! are JSON merge patches of the two labels and the taint list (with the resourceVersion read as
//! a precondition, since the taint list is one value), not server-side applies: the Factory
//! controller applies Node labels and taints under the same field manager, and an apply without
//! these labels would remove them. The Factory controller keeps every taint it did not put, so
//! the two never undo each other.

pub mod build;
pub mod drift;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{GpuPool, QuarantineReason};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use self::plan::{JobAction, JobState, News, Verdict};
use crate::conditions::events;
use crate::factory::Context;
use crate::factory::placement::Assignment;
use crate::factory::validate::ValidatedFactory;
use crate::interned::Labels;
use crate::nodes::{NodeFacts, NodeMetas, NodeName};
use crate::reconcile::apply::delete;
use crate::reconcile::children::child_selector;
use crate::{Error, FIELD_MANAGER, Result};

/// The health of one pool's Nodes, for its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolHealth {
    /// Nodes that have not passed their validation yet and are not quarantined.
    pub validating: BTreeSet<String>,
    /// Quarantined Nodes and why.
    pub quarantined: BTreeMap<String, QuarantineReason>,
}

/// What the health loop made of the Factory's Nodes, per pool with validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// By pool name.
    pub pools: BTreeMap<String, PoolHealth>,
}

impl Report {
    /// Whether `node` of `pool` is kept from tenants: validating or quarantined.
    pub fn holds(&self, pool: &str, node: &str) -> bool {
        self.pools
            .get(pool)
            .is_some_and(|h| h.validating.contains(node) || h.quarantined.contains_key(node))
    }
}

/// The validation Jobs of a Factory, by pool and Node: name and state.
type Jobs = HashMap<(String, String), (String, JobState)>;

fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let done = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if done("Complete").is_some() {
        JobState::Passed
    } else if let Some(failed) = done("Failed") {
        let why = [failed.reason.as_deref(), failed.message.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        JobState::Failed(format!(
            "validation Job {} failed ({})",
            job.name_any(),
            if why.is_empty() {
                "no reason given"
            } else {
                &why
            }
        ))
    } else {
        JobState::Running
    }
}

async fn list_jobs(ctx: &Context, factory: &str) -> Result<Jobs> {
    let namespace = &ctx.settings.namespace;
    let selector = child_selector(labels::FACTORY, factory);
    let jobs = Api::<Job>::namespaced(ctx.kit.client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|err| Error::request("listing", format!("Jobs {selector}"), err))?;
    Ok(jobs
        .items
        .iter()
        .filter(|job| job.metadata.deletion_timestamp.is_none())
        .filter_map(|job| {
            let pool = job.labels().get(labels::POOL)?.clone();
            let node = job.annotations().get(labels::VALIDATION_NODE)?.clone();
            Some(((pool, node), (job.name_any(), job_state(job))))
        })
        .collect())
}

/// Validates, quarantines and returns the Nodes of the Factory's pools with validation, and
/// clears the marks of Nodes whose pool has none. Every Node is tried whatever became of the
/// others; the report is what the Nodes carry once the writes are through, and the error the
/// first write that failed.
pub async fn reconcile(
    ctx: &Context,
    factory: &ValidatedFactory,
    assignment: &Assignment,
    metas: &NodeMetas,
) -> (Report, Option<Error>) {
    let mut report = Report::default();
    let mut jobs = match list_jobs(ctx, &factory.name).await {
        Ok(jobs) => jobs,
        Err(err) => return (report, Some(err)),
    };
    let mut first: Option<Error> = None;
    let mut keep = |result: Result<()>| {
        if let Err(err) = result {
            first.get_or_insert(err);
        }
    };
    for pool in &factory.spec.gpu_pools {
        let members = assignment
            .members
            .get(&pool.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let facts = ctx.nodes.facts_of(members);
        let health = report.pools.entry(pool.name.clone()).or_default();
        for node in members {
            let Some(meta) = metas.get(node) else {
                continue;
            };
            let job = jobs.remove(&(pool.name.clone(), node.to_string()));
            let Some(facts) = facts.get(node) else {
                // Facts arrive with the watch of the Factory's Nodes; this Node comes again then.
                if pool.validation.is_some()
                    && meta.labels.get(labels::VALIDATION) != Some(plan::PASSED)
                {
                    health.validating.insert(node.to_string());
                }
                continue;
            };
            let Some(validation) = &pool.validation else {
                // No validation (any more): the marks go, and so does a Job left over.
                let clear = Verdict {
                    validation: None,
                    quarantine: None,
                    job: JobAction::Keep,
                    news: None,
                };
                keep(mark(ctx, node, &meta.labels, facts, &clear, Vec::new()).await);
                if let Some((name, _)) = job {
                    keep(delete_job(ctx, &name).await);
                }
                continue;
            };
            let verdict = plan::decide(pool, &meta.labels, facts, job.as_ref().map(|(_, s)| s));
            keep(mark(ctx, node, &meta.labels, facts, &verdict, verdict.taints()).await);
            match (verdict.job, &job) {
                (JobAction::Create, _) => {
                    let built = build::build_job(
                        factory,
                        pool,
                        validation,
                        node,
                        facts.gpus,
                        &ctx.settings.namespace,
                    );
                    keep(create_job(ctx, &built).await);
                }
                (JobAction::Delete, Some((name, _))) => keep(delete_job(ctx, name).await),
                _ => {}
            }
            if let Some(news) = &verdict.news {
                tell(ctx, pool, node, news).await;
            }
            if let Some(reason) = verdict.quarantine {
                health.quarantined.insert(node.to_string(), reason);
            } else if !verdict.serves() {
                health.validating.insert(node.to_string());
            }
        }
        if pool.validation.is_none() {
            report.pools.remove(&pool.name);
        }
    }
    // Jobs of Nodes that left their pool.
    for (name, _) in jobs.into_values() {
        keep(delete_job(ctx, &name).await);
    }
    (report, first)
}

/// Removes the health labels and taints from `nodes`, which leave the Factory (their pool no
/// longer selects them, or the Factory is deleted). Run before their Factory label goes.
pub async fn release(ctx: &Context, nodes: &[NodeName], metas: &NodeMetas) -> Result<()> {
    let facts = ctx.nodes.facts_of(nodes);
    let clear = Verdict {
        validation: None,
        quarantine: None,
        job: JobAction::Keep,
        news: None,
    };
    let mut first = None;
    for node in nodes {
        let (Some(meta), Some(facts)) = (metas.get(node), facts.get(node)) else {
            continue;
        };
        if let Err(err) = mark(ctx, node, &meta.labels, facts, &clear, Vec::new()).await {
            first.get_or_insert(err);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Brings the Node's health labels and taints to the verdict's, writing only what differs.
async fn mark(
    ctx: &Context,
    node: &str,
    current: &Labels,
    facts: &NodeFacts,
    verdict: &Verdict,
    wanted: Vec<Taint>,
) -> Result<()> {
    let validation = verdict.validation;
    let quarantine = verdict.quarantine.map(QuarantineReason::as_str);
    let labels_in_sync = current.get(labels::VALIDATION) == validation
        && current.get(labels::QUARANTINE) == quarantine;
    let ours = |t: &Taint| (t.key.clone(), t.value.clone(), t.effect.clone());
    let present: BTreeSet<_> = facts
        .taints
        .iter()
        .filter(|t| plan::is_health_taint(t))
        .map(ours)
        .collect();
    let desired: BTreeSet<_> = wanted.iter().map(ours).collect();
    if labels_in_sync && present == desired {
        return Ok(());
    }
    let mut patch = json!({"metadata": {"labels": {
        labels::VALIDATION: validation,
        labels::QUARANTINE: quarantine,
    }}});
    if present != desired {
        let mut taints: Vec<Taint> = facts
            .taints
            .iter()
            .filter(|t| !plan::is_health_taint(t))
            .cloned()
            .collect();
        taints.extend(wanted);
        // The taint list is one value: written over the version it was read at.
        patch["metadata"]["resourceVersion"] = Value::from(facts.resource_version.clone());
        patch["spec"] = json!({"taints": taints});
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match Api::<Node>::all(ctx.kit.client.clone())
        .patch(node, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            ctx.kit.metrics.write("node", "patch");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Err(Error::NodeConflict(node.to_owned()))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(Error::request("writing", format!("Node {node}"), err)),
    }
}

async fn create_job(ctx: &Context, job: &Job) -> Result<()> {
    let api = Api::<Job>::namespaced(ctx.kit.client.clone(), &ctx.settings.namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, job).await {
        Ok(_) => {
            ctx.kit.metrics.write("job", "create");
            Ok(())
        }
        // One left from a run whose result is not read yet; the next reconcile reads it.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(Error::request(
            "creating",
            format!("Job {}/{}", ctx.settings.namespace, job.name_any()),
            err,
        )),
    }
}

async fn delete_job(ctx: &Context, name: &str) -> Result<()> {
    let api = Api::<Job>::namespaced(ctx.kit.client.clone(), &ctx.settings.namespace);
    delete(&ctx.kit, &api, "job", name).await
}

/// An Event on the Node.
async fn tell(ctx: &Context, pool: &GpuPool, node: &str, news: &News) {
    let reference = Node {
        metadata: ObjectMeta {
            name: Some(node.to_owned()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    let (type_, reason, note) = match news {
        News::Quarantined(why, message) => (
            EventType::Warning,
            events::QUARANTINED,
            format!(
                "quarantined ({}): {message}; taint {}:NoSchedule keeps new Pods of pool {} off it until a validation run passes",
                why.as_str(),
                labels::QUARANTINE,
                pool.name
            ),
        ),
        News::Passed { returned: true } => (
            EventType::Normal,
            events::RETURNED,
            format!(
                "passed its validation and left quarantine; it serves pool {} again",
                pool.name
            ),
        ),
        News::Passed { returned: false } => (
            EventType::Normal,
            events::VALIDATED,
            format!("passed its validation; it serves pool {}", pool.name),
        ),
    };
    ctx.kit
        .events
        .publish(&reference, type_, reason, note)
        .await;
}
