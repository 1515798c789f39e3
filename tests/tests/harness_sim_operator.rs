//! The simulated VictoriaMetrics operator against the real API server.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use harness::sim::{FAIL_ANNOTATION, FAIL_REASON, READY_AFTER_ANNOTATION, STUCK_ANNOTATION};
use harness::{ControlPlane, apply_yaml_with, create_namespace};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

fn vmcluster_yaml(name: &str, version: &str) -> String {
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1beta1
kind: VMCluster
metadata:
  name: {name}
spec:
  clusterVersion: {version}
  retentionPeriod: "14"
  vmstorage:
    replicaCount: 1
    storage:
      volumeClaimTemplate:
        spec:
          resources:
            requests:
              storage: 10Gi
  vmselect:
    replicaCount: 1
    port: "8481"
  vminsert:
    replicaCount: 1
    extraArgs:
      maxLabelsPerTimeseries: "40"
"#
    )
}

struct Fixture {
    api: Api<DynamicObject>,
    ns: String,
    client: kube::Client,
}

async fn setup(prefix: &str) -> Result<Fixture> {
    let cp = ControlPlane::shared().await?;
    cp.install_crds().await?;
    cp.ensure_sim_operator().await?;
    let client = cp.client().await?;
    let ns = create_namespace(&client, prefix).await?;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("operator.victoriametrics.com", "v1beta1", "VMCluster"),
        "vmclusters",
    );
    let api = Api::namespaced_with(client.clone(), &ns, &resource);
    Ok(Fixture { api, ns, client })
}

impl Fixture {
    async fn apply(&self, name: &str, version: &str) -> Result<DynamicObject> {
        let strict = PatchParams::apply(harness::FIELD_MANAGER)
            .force()
            .validation_strict();
        let mut objects = apply_yaml_with(
            &self.client,
            Some(&self.ns),
            &vmcluster_yaml(name, version),
            &strict,
        )
        .await?;
        Ok(objects.remove(0))
    }

    async fn annotate(&self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Polls the status until `accept` holds; returns every distinct (updateStatus,
    /// observedGeneration) seen on the way, the last one being accepted.
    async fn wait_status(
        &self,
        name: &str,
        accept: impl Fn(&str, i64) -> bool,
    ) -> Result<Vec<(String, i64)>> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen: Vec<(String, i64)> = Vec::new();
        loop {
            let (status, generation) = self.status(name).await?;
            let state = (
                status["updateStatus"].as_str().unwrap_or("").to_string(),
                status["observedGeneration"].as_i64().unwrap_or(0),
            );
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            if accept(&state.0, generation) && state.1 == generation {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                bail!("{name}: condition not reached within {TIMEOUT:?}; states seen: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&self, name: &str) -> Result<(Value, i64)> {
        let object = self.api.get(name).await?;
        Ok((
            object.data.get("status").cloned().unwrap_or(Value::Null),
            object.metadata.generation.unwrap_or(0),
        ))
    }

    /// Asserts the status stays `expected` for `how_long` (sampled).
    async fn stays(&self, name: &str, expected: &str, how_long: Duration) -> Result<()> {
        let end = Instant::now() + how_long;
        while Instant::now() < end {
            let (status, _) = self.status(name).await?;
            if status["updateStatus"] != json!(expected) {
                bail!("{name}: expected to stay {expected}, got {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn vmcluster_becomes_operational_and_follows_spec_changes() -> Result<()> {
    let f = setup("sim-generation").await?;
    let created = f.apply("main", "v1.110.0").await?;
    assert_eq!(created.metadata.generation, Some(1));
    let seen = f.wait_status("main", |s, _| s == "operational").await?;
    assert_eq!(
        seen.last(),
        Some(&("operational".to_string(), 1)),
        "{seen:?}"
    );

    // A spec change bumps the generation: expanding for generation 2, then operational for it.
    let changed = f.apply("main", "v1.111.0").await?;
    assert_eq!(changed.metadata.generation, Some(2));
    let seen = f.wait_status("main", |s, _| s == "operational").await?;
    let expanding = seen.iter().position(|s| s == &("expanding".to_string(), 2));
    let operational = seen
        .iter()
        .position(|s| s == &("operational".to_string(), 2));
    assert!(
        matches!((expanding, operational), (Some(e), Some(o)) if e < o),
        "expected expanding then operational for generation 2, saw {seen:?}"
    );
    // Never reported operational for generation 2 before having been expanding for it.
    assert!(
        !seen[..expanding.unwrap_or(0)].contains(&("operational".to_string(), 2)),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn fail_annotation_fails_and_removing_it_heals() -> Result<()> {
    let f = setup("sim-fail").await?;
    f.apply("broken", "v1.110.0").await?;
    f.wait_status("broken", |s, _| s == "operational").await?;

    f.annotate("broken", FAIL_ANNOTATION, Some("true")).await?;
    f.wait_status("broken", |s, _| s == "failed").await?;
    let (status, _) = f.status("broken").await?;
    assert_eq!(status["reason"], json!(FAIL_REASON));
    f.stays("broken", "failed", Duration::from_millis(1500))
        .await?;

    f.annotate("broken", FAIL_ANNOTATION, None).await?;
    let seen = f.wait_status("broken", |s, _| s == "operational").await?;
    assert!(
        seen.iter().any(|(s, _)| s == "expanding"),
        "healing goes through expanding: {seen:?}"
    );
    let (status, _) = f.status("broken").await?;
    assert_eq!(status["reason"], json!(""), "reason cleared after healing");
    Ok(())
}

#[tokio::test]
async fn stuck_annotation_keeps_expanding_until_removed() -> Result<()> {
    let f = setup("sim-stuck").await?;
    f.apply("stuck", "v1.110.0").await?;
    f.annotate("stuck", STUCK_ANNOTATION, Some("true")).await?;
    f.wait_status("stuck", |s, _| s == "expanding").await?;
    // The ready delay is 1 s: well past it, still expanding.
    f.stays("stuck", "expanding", Duration::from_millis(2500))
        .await?;

    f.annotate("stuck", STUCK_ANNOTATION, None).await?;
    f.wait_status("stuck", |s, _| s == "operational").await?;
    Ok(())
}

#[tokio::test]
async fn ready_after_annotation_delays_operational() -> Result<()> {
    let f = setup("sim-ready-after").await?;
    f.apply("slow", "v1.110.0").await?;
    f.wait_status("slow", |s, _| s == "operational").await?;

    // A 4 s ready-after on a spec change: still expanding after more than the 1 s default delay.
    f.annotate("slow", READY_AFTER_ANNOTATION, Some("4"))
        .await?;
    f.apply("slow", "v1.111.0").await?;
    f.wait_status("slow", |s, g| s == "expanding" && g == 2)
        .await?;
    f.stays("slow", "expanding", Duration::from_millis(2000))
        .await?;
    f.wait_status("slow", |s, g| s == "operational" && g == 2)
        .await?;

    // Back to the default: a long ready-after set while expanding is healed by removing it.
    f.annotate("slow", READY_AFTER_ANNOTATION, Some("3600"))
        .await?;
    f.wait_status("slow", |s, _| s == "expanding").await?;
    f.stays("slow", "expanding", Duration::from_millis(1500))
        .await?;
    f.annotate("slow", READY_AFTER_ANNOTATION, None).await?;
    f.wait_status("slow", |s, _| s == "operational").await?;
    Ok(())
}
