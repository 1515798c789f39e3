//! Every child shape the controller writes is accepted by the VictoriaMetrics operator's own CRDs
//! (full upstream schemas, from its Go module): each example's backends and agents, and its VMAuth
//! with every membership the rollout passes through (all zones, each zone excluded, none), as a
//! VMCluster and a VMSingle backend, with `unauthorizedUserAccessSpec` routing to the named
//! default refs. Each is sent as a server-side dry-run apply with `fieldValidation=Strict`, as
//! the controller writes them, so a field the schema requires or does not declare fails here.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use harness::ControlPlane;
use kube::api::PatchParams;
use serde_json::{Value, json};
use shared::VMDistributed;
use shared::defaults::apply_defaults;
use shared::model::Membership;
use shared::model::Observed;
use shared::render::{render_vmauth, render_zone};

fn example(name: &str) -> Result<Value> {
    let path = harness::workspace_root().join("examples").join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// The example as the mutating webhook stores it, in `ns`, with a UID (owner references).
fn stored(mut value: Value, ns: &str) -> Result<VMDistributed> {
    value["metadata"]["namespace"] = json!(ns);
    value["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000001");
    let cr: VMDistributed = serde_json::from_value(value)?;
    Ok(apply_defaults(&cr))
}

/// Every membership the VMAuth takes during a rollout of `cr`: all zones, each zone left out of
/// both targets, and no zone at all (the `static` placeholder).
fn memberships(cr: &VMDistributed) -> Vec<Membership> {
    let all: BTreeSet<String> = cr.spec.zones.iter().map(|z| z.name.clone()).collect();
    let mut out = vec![
        Membership {
            write: all.clone(),
            read: all.clone(),
        },
        Membership::default(),
    ];
    for zone in &all {
        let mut rest = all.clone();
        rest.remove(zone);
        out.push(Membership {
            write: rest.clone(),
            read: rest,
        });
    }
    out
}

/// Dry-runs every child of `cr` in every shape; returns the failures, one line each.
async fn dry_run_every_shape(client: &kube::Client, cr: &VMDistributed) -> Result<Vec<String>> {
    let params = PatchParams::apply(shared::model::FIELD_MANAGER)
        .force()
        .dry_run()
        .validation_strict();
    let observed = Observed::default();
    let mut objects = Vec::new();
    for zone in &cr.spec.zones {
        let intents = render_zone(cr, zone, &observed);
        objects.push(intents.backend.to_object());
        objects.push(intents.agent.to_object());
    }
    for membership in memberships(cr) {
        if let Some(auth) = render_vmauth(cr, &observed, &membership) {
            objects.push(auth.to_object());
        }
    }
    let mut failures = Vec::new();
    for object in objects {
        let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
        if let Err(e) = harness::apply_value(client, None, object.clone(), &params).await {
            failures.push(format!("{what}: {e:#}\n  spec: {}", object["spec"]));
        }
    }
    Ok(failures)
}

#[tokio::test]
async fn every_written_shape_of_every_example_passes_the_upstream_crds() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "upstream-shapes").await?;

    let mut failures = Vec::new();
    let mut checked = 0;
    for name in [
        "seed.yaml",
        "distributed-chart.yaml",
        "zone-template.yaml",
        "license.yaml",
        "ref.yaml",
    ] {
        let cr = stored(example(name)?, &ns)?;
        checked += 1;
        failures.extend(
            dry_run_every_shape(&client, &cr)
                .await?
                .into_iter()
                .map(|f| format!("{name}: {f}")),
        );
    }

    // A VMSingle backend, and a VMAuth that serves unauthenticated requests through the named
    // default refs (how docs/rollout.md tells users to open the entry point).
    let single = stored(
        json!({
            "apiVersion": "operator.victoriametrics.com/v1alpha1",
            "kind": "VMDistributed",
            "metadata": {"name": "single"},
            "spec": {
                "backendType": "VMSingle",
                "vmauth": {"spec": {"unauthorizedUserAccessSpec": {
                    "targetRefs": [{"name": "write"}, {"name": "read"}]}}},
                "zoneCommon": {
                    "vmsingle": {"spec": {"retentionPeriod": "1"}},
                    "vmagent": {"spec": {"replicaCount": 1}}
                },
                "zones": [{"name": "zone-a"}, {"name": "zone-b"}, {"name": "zone-c"}]
            }
        }),
        &ns,
    )?;
    checked += 1;
    failures.extend(dry_run_every_shape(&client, &single).await?);

    if !failures.is_empty() {
        bail!(
            "{} of the shapes of {checked} CRs were refused by the upstream CRDs:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// The check above can fail: the target-ref shape without the `crd.name`/`crd.namespace` pair
/// that the upstream schema requires is refused with 422.
#[tokio::test]
async fn a_target_ref_without_the_required_crd_pair_is_refused() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "upstream-shapes-neg").await?;
    let object = json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMAuth",
        "metadata": {"name": "bare", "namespace": ns},
        "spec": {"defaultTargetRefs": [{"name": "write", "paths": ["/insert/.+"],
            "crd": {"kind": "VMAgent", "objects": [{"name": "a", "namespace": ns}]}}]}
    });
    let params = PatchParams::apply(shared::model::FIELD_MANAGER)
        .force()
        .dry_run()
        .validation_strict();
    let err = harness::apply_value(&client, None, object, &params)
        .await
        .err()
        .context("the upstream CRD accepted a crd target ref without name and namespace")?;
    let text = format!("{err:#}");
    assert!(
        text.contains("crd.name") && text.contains("Required value"),
        "unexpected refusal: {text}"
    );
    Ok(())
}
