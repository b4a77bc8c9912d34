//! Writes of the JupyterEnvironment controller: the token Secret, created once, and the built
//! children through the reconcile kit.

use std::slice;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::PostParams;

use super::build::{self, Desired};
use super::validate::ValidatedEnvironment;
use crate::FIELD_MANAGER;
use crate::reconcile::apply::{Kind, sync_children};
use crate::reconcile::children::child_selector;
use crate::tenancy::{Context, Error, Result};

const CLAIM: Kind = Kind::new("persistentvolumeclaim");
const SERVICE: Kind = Kind::new("service");
const NETWORK_POLICY: Kind = Kind::new("networkpolicy");
const STATEFUL_SET: Kind = Kind::new("statefulset");

/// A random access token: 32 bytes from the operating system, hex-encoded.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| Error::Token(err.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates the token Secret when it does not exist; an existing token is never rewritten, so it
/// survives reconciles and operator restarts. Its value is random, so it is not part of the
/// build: it is made here, only when the Secret is missing.
async fn ensure_token(ctx: &Context, env: &ValidatedEnvironment) -> Result<()> {
    let api = Api::<Secret>::namespaced(ctx.kit.client.clone(), &env.namespace);
    if api
        .get_opt(&build::token_secret_name(&env.name))
        .await?
        .is_some()
    {
        return Ok(());
    }
    let secret = build::build_token_secret(env, &random_token()?);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, &secret).await {
        Ok(_) => ctx.kit.metrics.write("secret", "create"),
        // Another replica created it first: theirs is the token.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// Applies the environment's children; returns the StatefulSet's ready replicas.
pub async fn apply_children(
    ctx: &Context,
    env: &ValidatedEnvironment,
    desired: &Desired,
) -> Result<i32> {
    let client = &ctx.kit.client;
    let namespace = &env.namespace;
    let selector = child_selector(fabbrica_crds::labels::ENVIRONMENT, &env.name);
    ensure_token(ctx, env).await?;
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
    sync_children(&ctx.kit, &api, CLAIM, &selector, &desired.claims).await?;
    let api = Api::<Service>::namespaced(client.clone(), namespace);
    let service = slice::from_ref(&desired.service);
    sync_children(&ctx.kit, &api, SERVICE, &selector, service).await?;
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
    let policy = slice::from_ref(&desired.network_policy);
    sync_children(&ctx.kit, &api, NETWORK_POLICY, &selector, policy).await?;
    let api = Api::<StatefulSet>::namespaced(client.clone(), namespace);
    let stateful_set = slice::from_ref(&desired.stateful_set);
    let stored = sync_children(&ctx.kit, &api, STATEFUL_SET, &selector, stateful_set).await?;
    Ok(stored
        .get(&env.name)
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0))
}
