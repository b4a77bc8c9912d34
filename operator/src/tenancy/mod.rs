//! Tenancy: the Workspace and JupyterEnvironment controllers.
//!
//! A Workspace becomes a namespace that is safe by default (quota, limits, default-deny network
//! policies, members bound to `edit` in that namespace only, Kueue queues where Kueue is served);
//! a JupyterEnvironment becomes a notebook server in that namespace. Both reconcile as a pipeline:
//! fetch -> validate (the shared rules of `fabbrica-crds`) -> build (pure `build_<child>`
//! functions) -> apply (server-side apply, orphans deleted) -> status (written only when changed),
//! with the writes, the status patch, Events and the run loop of [`crate::reconcile`].

pub mod allocation;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod jupyter;
pub mod workspace;

use std::sync::Arc;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, Workspace};
use futures::FutureExt;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::Subject;
use kube::api::{ListParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::Settings;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::reconcile::Kit;

pub use error::{Error, Result};

/// What the tenancy reconciles share.
pub struct Context {
    /// The client, metrics and Event publisher of the reconcile kit.
    pub kit: Kit,
    /// Every Workspace, as the Workspace controller's watch sees them; filled before the first
    /// Workspace reconcile runs.
    pub workspaces: Store<Workspace>,
    /// Reconcile only the tenants of Factories matching this label selector.
    pub factory_selector: Option<String>,
    /// Who the API server knows this operator as, bound to `edit` in every workspace's
    /// namespace; `None` when it could not be asked (then notebooks' token Secrets are refused).
    pub identity: Option<Subject>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("workspaces", &self.workspaces.state().len())
            .finish_non_exhaustive()
    }
}

impl AsRef<Kit> for Context {
    fn as_ref(&self) -> &Kit {
        &self.kit
    }
}

impl Context {
    /// A context whose Events name `reporter` as the instance.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        reporter: &str,
        workspaces: Store<Workspace>,
        factory_selector: Option<String>,
        identity: Option<Subject>,
    ) -> Self {
        Self {
            kit: Kit::new(client, metrics, clock, reporter),
            workspaces,
            factory_selector,
            identity,
        }
    }

    /// Whether this instance reconciles the tenants of `factory`: always without a
    /// `--factory-selector`; with one, only of an existing Factory that matches it (asked of
    /// the API server, which evaluates every selector syntax).
    pub async fn manages(&self, factory: Option<&Factory>) -> Result<bool> {
        let Some(selector) = &self.factory_selector else {
            return Ok(true);
        };
        let Some(factory) = factory else {
            return Ok(false);
        };
        let params = ListParams::default()
            .labels(selector)
            .fields(&format!("metadata.name={}", factory.name_any()));
        let matching = Api::<Factory>::all(self.kit.client.clone())
            .list_metadata(&params)
            .await?;
        Ok(!matching.items.is_empty())
    }

    /// The Workspace whose namespace is `namespace`: the one its `fabbrica.io/workspace` label
    /// names, if that Workspace owns the namespace.
    ///
    /// Two reads instead of the Workspace watch's store: waiting for that store to fill from
    /// several reconciles at once loses wake-ups (its readiness signal wakes one waiter only).
    pub async fn workspace_of(&self, namespace: &str) -> Result<Option<Workspace>> {
        let Some(ns) = Api::<Namespace>::all(self.kit.client.clone())
            .get_opt(namespace)
            .await?
        else {
            return Ok(None);
        };
        let Some(name) = ns.labels().get(labels::WORKSPACE) else {
            return Ok(None);
        };
        let workspace = Api::<Workspace>::all(self.kit.client.clone())
            .get_opt(name)
            .await?;
        Ok(workspace.filter(|w| {
            w.spec.namespace == namespace
                && w.uid()
                    .is_some_and(|uid| workspace::apply::owned_by(&ns, &uid))
        }))
    }
}

/// The Workspace and JupyterEnvironment controllers, running until `shutdown` completes.
///
/// With `settings.factory_selector`, only the tenants of matching Factories are reconciled;
/// `settings.reporter` names this operator instance in Events.
pub fn run(
    client: Client,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let reporter = settings.reporter.clone();
    let factory_selector = settings.factory_selector.clone();
    let ledgers = settings.namespace.clone();
    async move {
        let shutdown = shutdown.shared();
        let identity = own_identity(&client).await;
        let allocations = allocation::controller(client.clone());
        let workspaces = workspace::controller(client.clone());
        let ctx = Arc::new(Context::new(
            client,
            metrics,
            clock,
            &reporter,
            workspaces.store(),
            factory_selector,
            identity,
        ));
        let environments = jupyter::controller(&ctx);
        let allocation_ctx = Arc::new(allocation::Context {
            tenancy: ctx.clone(),
            namespace: ledgers,
        });
        futures::join!(
            workspace::run(workspaces, ctx.clone(), shutdown.clone()),
            jupyter::run(environments, ctx, shutdown.clone()),
            allocation::run(allocations, allocation_ctx, shutdown),
        );
    }
}

/// The subject the API server authenticates this client as, from a SelfSubjectReview (which
/// every authenticated identity may make).
async fn own_identity(client: &Client) -> Option<Subject> {
    let review = SelfSubjectReview {
        metadata: Default::default(),
        status: None,
    };
    let api = Api::<SelfSubjectReview>::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(review) => {
            let username = review.status?.user_info?.username?;
            tracing::info!(%username, "the operator's identity, bound to edit in workspace namespaces");
            Some(workspace::build::subject_of(&username))
        }
        Err(err) => {
            tracing::error!(
                error = %err,
                "could not ask the API server who this operator is; notebooks' token Secrets will be refused"
            );
            None
        }
    }
}

/// References to the objects of `store` that `select` picks, for `Controller::watches` mappers.
pub(crate) fn refs_where<K>(store: &Store<K>, select: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| select(o))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Tolerations for every taint of a pool, so notebooks and queued workloads can land on it.
pub fn tolerations(
    pool: &fabbrica_crds::v1alpha1::GpuPool,
) -> Vec<k8s_openapi::api::core::v1::Toleration> {
    fabbrica_crds::kueue::tolerations(pool)
}
