//! How a zone's `trafficMode` shapes its `VMCluster`'s `vminsert` (docs/rollout.md "Traffic
//! modes and vminsert").
//!
//! A zone that takes no writes (`read-only`, `maintenance`) runs no vminsert, as upstream does:
//! `replicaCount: 0`. The VictoriaMetrics operator ignores `replicaCount` while `vminsert.hpa` is
//! set (it leaves the Deployment's count to the HPA), so such a zone also loses its `hpa` while the
//! mode lasts; the operator then deletes the HPA, which it no longer finds in the spec.
//!
//! Coming back needs one step more: the Deployment is at 0 replicas, a Kubernetes HPA does not
//! scale a workload at 0 ("scaling is disabled"), and with `hpa` set the operator keeps the
//! Deployment's count. So vminsert is first scaled up without the HPA, and the HPA returns once
//! the operator reports that count rolled out.

use serde_json::{Map, Value, json};

use crate::api::TrafficMode;
use crate::children::ChildObject;

/// Shape the merged VMCluster spec of a zone in `mode`, given its live object. A spec without a
/// `vminsert` section (a `ref` or adopted cluster whose owner manages it) is left alone: taking
/// the field over would lose the owner's settings when the zone takes writes again.
pub(crate) fn shape_vminsert(spec: &mut Value, mode: TrafficMode, live: Option<&ChildObject>) {
    let Some(Value::Object(vminsert)) = spec.get_mut("vminsert") else {
        return;
    };
    if !mode.writes() {
        vminsert.remove("hpa");
        vminsert.insert("replicaCount".to_owned(), json!(0));
        return;
    }
    if vminsert.contains_key("hpa") && still_scaled_down(live) {
        let hpa = vminsert.remove("hpa");
        let replicas = warm_up_replicas(vminsert, hpa.as_ref());
        vminsert.insert("replicaCount".to_owned(), json!(replicas));
    }
}

/// The live cluster runs vminsert without an HPA, and either at 0 replicas (the shape of a zone
/// that took no writes) or not yet rolled out to the count it was given (the operator has not
/// reported it `operational` at its generation).
fn still_scaled_down(live: Option<&ChildObject>) -> bool {
    let Some(live) = live else {
        return false;
    };
    let Some(vminsert) = live.spec.get("vminsert").and_then(Value::as_object) else {
        return false;
    };
    if vminsert.contains_key("hpa") {
        return false;
    }
    vminsert.get("replicaCount").and_then(Value::as_i64) == Some(0) || !live.is_ready()
}

/// The count vminsert runs before its HPA returns: the user's `replicaCount` when positive, else
/// the HPA's `minReplicas` (1 when unset, as the operator reads it).
fn warm_up_replicas(vminsert: &Map<String, Value>, hpa: Option<&Value>) -> i64 {
    vminsert
        .get("replicaCount")
        .and_then(Value::as_i64)
        .filter(|count| *count > 0)
        .or_else(|| {
            hpa.and_then(|h| h.get("minReplicas"))
                .and_then(Value::as_i64)
        })
        .unwrap_or(1)
        .max(1)
}
