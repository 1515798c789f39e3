//! The controller's preflight verdict is not kept past a change of the CRDs it was judged
//! against: a spec the VMCluster CRD refuses gets `Ready=False, InvalidSpec` with a `preflight:`
//! message, and once the CRD accepts it the same generation passes preflight, without a restart
//! of the controller. (The webhook is not running here: the object reaches the controller as one
//! that bypassed admission would.)

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use harness::controller_env::standalone_controller;
use harness::{ControlPlane, Options, free_port};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// The `Ready` condition of the object, if any.
fn ready_condition(cr: &DynamicObject) -> Option<Value> {
    cr.data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_rejection_is_judged_again_when_the_crd_changes() -> Result<()> {
    harness::install_crypto_provider();
    // A control plane of its own: the test changes a CRD every test would see.
    let cp = ControlPlane::start(Options::default()).await?;
    cp.install_crds().await?;
    let client = cp.client().await?;
    let ns = harness::create_namespace(&client, "preflight-crd").await?;
    // No HTTP_PROXY (ProcessSpec::agent_metrics_proxy): no simulator runs here, so no VMAgent has
    // endpoints or becomes ready, and the controller never gets to poll one.
    let controller = cp.spawn(standalone_controller(
        &cp,
        "controller-preflight",
        cp.kubeconfig_path(),
        None,
        free_port()?,
    )?)?;
    // `replicaCont` is a field the VMCluster CRD does not declare.
    let cr = json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "typo", "namespace": ns},
        "spec": {
            "vmauth": {"enabled": false},
            "zoneCommon": {"vmcluster": {"spec": {
                "vmstorage": {"replicaCount": 1, "replicaCont": 1},
                "vmselect": {"replicaCount": 1},
                "vminsert": {"replicaCount": 1}
            }}},
            "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
        }
    });
    harness::apply_value(&client, Some(&ns), cr, &PatchParams::apply("test").force()).await?;
    let crs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &vmdistributed_runtime::resources::vmdistributed(),
    );
    let wait = |what: &'static str, done: fn(&DynamicObject) -> bool| {
        let crs = crs.clone();
        let controller = &controller;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let cr = crs.get("typo").await?;
                if done(&cr) {
                    return Ok::<DynamicObject, anyhow::Error>(cr);
                }
                if Instant::now() > deadline {
                    bail!(
                        "{what}: status {:?}; log:\n{}",
                        cr.data.get("status"),
                        controller.log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let refused = wait("preflight never refused the typo", |cr| {
        ready_condition(cr).is_some_and(|c| {
            c["reason"] == "InvalidSpec"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("preflight") && m.contains("replicaCont"))
        })
    })
    .await?;
    // Worded as the webhook's preflight words it: the field the user wrote, once for both
    // zones' clusters that inherited it.
    let message = ready_condition(&refused)
        .and_then(|c| c["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "preflight: spec.zoneCommon.vmcluster.spec.vmstorage.replicaCont: field not declared in schema (refused for VMCluster typo-zone-a in zone zone-a, VMCluster typo-zone-b in zone zone-b)"
        ),
        "{message}"
    );
    // And each zone says what of its own was refused.
    for zone in ["zone-a", "zone-b"] {
        let zone_message = refused
            .data
            .pointer("/status/zones")
            .and_then(Value::as_array)
            .and_then(|zones| zones.iter().find(|z| z["name"] == zone))
            .and_then(|z| z["message"].as_str())
            .unwrap_or_default();
        assert!(
            zone_message.contains("replicaCont") && zone_message.contains(zone),
            "{zone}: {:?}",
            refused.data.get("status")
        );
    }
    assert_eq!(
        refused.data.pointer("/status/preflightGeneration"),
        None,
        "{:?}",
        refused.data.get("status")
    );

    // The VictoriaMetrics CRD now declares the field (as a newer operator version might).
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            ),
            "customresourcedefinitions",
        ),
    );
    let patch: Value = json!([{
        "op": "add",
        "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/vmstorage/properties/replicaCont",
        "value": {"type": "integer"}
    }]);
    let patch: kube::api::Patch<Value> = Patch::Json(serde_json::from_value(patch)?);
    crds.patch(
        "vmclusters.operator.victoriametrics.com",
        &PatchParams::default(),
        &patch,
    )
    .await?;
    // The same generation passes preflight now: no restart, no change of the object.
    let passed = wait(
        "preflight was not judged again after the CRD changed",
        |cr| {
            cr.data
                .pointer("/status/preflightGeneration")
                .and_then(Value::as_i64)
                == cr.metadata.generation
        },
    )
    .await?;
    assert_eq!(passed.metadata.generation, refused.metadata.generation);
    assert!(
        ready_condition(&passed).is_none_or(|c| c["reason"] != "InvalidSpec"),
        "{:?}",
        passed.data.get("status")
    );
    drop(controller);
    cp.stop()?;
    Ok(())
}
