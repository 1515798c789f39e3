//! The simulated VictoriaMetrics operator against the real API server, with its stand-in for the
//! VMAgents' endpoints and `/metrics`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use harness::sim::{FAIL_ANNOTATION, FAIL_REASON, READY_AFTER_ANNOTATION, STUCK_ANNOTATION};
use harness::vmagent_standin::{
    MANAGED_BY, PENDING_BYTES_ANNOTATION, PENDING_METRIC_ANNOTATION, PENDING_MISSING_ANNOTATION,
    PENDING_URL_ANNOTATION, VMAGENT_PORT, get_through_proxy,
};
use harness::{ControlPlane, apply_yaml_with, create_namespace};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use shared::names::ChildKind;
use vmdistributed_runtime::resources;

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
    let api = Api::namespaced_with(client.clone(), &ns, &resources::child(ChildKind::VMCluster));
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

const VMAGENT_YAML: &str = r#"apiVersion: operator.victoriametrics.com/v1beta1
kind: VMAgent
metadata:
  name: agent
spec:
  remoteWrite:
  - url: http://vminsert-a:8480/insert/0/prometheus/api/v1/write
  - url: http://vminsert-b:8480/insert/0/prometheus/api/v1/write
  - url: http://vminsert-c:8480/insert/0/prometheus/api/v1/write
"#;

/// The EndpointSlices labelled for Service `service` in `ns`.
async fn slices_of(client: &kube::Client, ns: &str, service: &str) -> Result<Vec<EndpointSlice>> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let selector = format!("kubernetes.io/service-name={service}");
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Polls until `accept` holds for the slices of `service`; returns them.
async fn wait_slices(
    client: &kube::Client,
    ns: &str,
    service: &str,
    accept: impl Fn(&[EndpointSlice]) -> bool,
) -> Result<Vec<EndpointSlice>> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let slices = slices_of(client, ns, service).await?;
        if accept(&slices) {
            return Ok(slices);
        }
        if Instant::now() > deadline {
            bail!("EndpointSlices of {ns}/{service} after {TIMEOUT:?}: {slices:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/metrics` of `address` through `proxy` until the body satisfies `accept`.
async fn wait_metrics(
    proxy: &str,
    address: Ipv4Addr,
    accept: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (code, body) = get_through_proxy(proxy, address, VMAGENT_PORT).await?;
        if code == 200 && accept(&body) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("http://{address}:{VMAGENT_PORT}/metrics through {proxy}: {code} {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the series whose labels contain `labels_part`.
fn sample(body: &str, labels_part: &str) -> Option<u64> {
    body.lines()
        .find(|l| !l.starts_with('#') && l.contains(labels_part))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn vmagents_get_an_endpoint_whose_metrics_the_annotations_control() -> Result<()> {
    let f = setup("sim-vmagent-metrics").await?;
    let cp = ControlPlane::shared().await?;
    let proxy = cp
        .sim_agent_metrics_proxy()
        .context("the shared simulator has no agent metrics proxy")?;
    let agents = Api::<DynamicObject>::namespaced_with(
        f.client.clone(),
        &f.ns,
        &resources::child(ChildKind::VMAgent),
    );
    harness::apply_yaml(&f.client, Some(&f.ns), VMAGENT_YAML).await?;

    // One slice, named and labelled like the Service, one ready endpoint, port http 8429.
    let slices = wait_slices(&f.client, &f.ns, "vmagent-agent", |s| s.len() == 1).await?;
    let slice = &slices[0];
    assert_eq!(slice.metadata.name.as_deref(), Some("vmagent-agent"));
    assert_eq!(
        slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some(MANAGED_BY)
    );
    let port = slice.ports.as_ref().and_then(|p| p.first()).cloned();
    assert_eq!(
        port.as_ref().map(|p| (p.name.as_deref(), p.port)),
        Some((Some("http"), Some(i32::from(VMAGENT_PORT))))
    );
    assert_eq!(slice.endpoints.len(), 1, "{slice:?}");
    let endpoint = &slice.endpoints[0];
    assert_eq!(
        endpoint.conditions.as_ref().and_then(|c| c.ready),
        Some(true)
    );
    let address: Ipv4Addr = endpoint.addresses[0].parse()?;
    assert_eq!(address.octets()[..2], [198, 18], "{address}");

    // One series per remoteWrite entry, every queue empty.
    let body = wait_metrics(proxy, address, |_| true).await?;
    let series: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(series.len(), 3, "{body}");
    for n in 1..=3 {
        let labels = format!(
            "path=\"/tmp/vmagent-remotewrite-data/persistent-queue/{n}_0000000000000000\",url=\"{n}:secret-url\""
        );
        assert_eq!(sample(&body, &labels), Some(0), "{body}");
    }

    // The annotation sets the bytes of one queue.
    let annotate = |key: &'static str, value: Option<&'static str>| {
        let agents = agents.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {key: value}}});
            agents
                .patch("agent", &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            anyhow::Ok(())
        }
    };
    annotate(PENDING_BYTES_ANNOTATION, Some("2=1048576")).await?;
    let body = wait_metrics(proxy, address, |b| {
        sample(b, "persistent-queue/2_") == Some(1_048_576)
    })
    .await?;
    assert_eq!(sample(&body, "persistent-queue/1_"), Some(0), "{body}");
    assert_eq!(sample(&body, "persistent-queue/3_"), Some(0), "{body}");

    // The older metric only, and a missing series.
    annotate(PENDING_METRIC_ANNOTATION, Some("legacy")).await?;
    annotate(PENDING_MISSING_ANNOTATION, Some("3")).await?;
    let body = wait_metrics(proxy, address, |b| {
        b.contains("vm_persistentqueue_bytes_pending") && !b.contains("persistent-queue/3_")
    })
    .await?;
    assert!(
        !body.contains("vmagent_remotewrite_pending_data_bytes"),
        "{body}"
    );
    assert!(!body.contains("url="), "{body}");
    assert_eq!(
        sample(&body, "persistent-queue/2_"),
        Some(1_048_576),
        "{body}"
    );

    // Real URLs, as with -remoteWrite.showURL.
    annotate(PENDING_METRIC_ANNOTATION, None).await?;
    annotate(PENDING_URL_ANNOTATION, Some("show")).await?;
    wait_metrics(proxy, address, |b| {
        b.contains("url=\"1:http://vminsert-a:8480/insert/0/prometheus/api/v1/write\"")
    })
    .await?;

    // Nobody else's address is answered.
    let other = Ipv4Addr::new(198, 19, 255, 254);
    let (code, _) = get_through_proxy(proxy, other, VMAGENT_PORT).await?;
    assert_eq!(code, 502, "an address no VMAgent is published at");

    // useLegacyNaming renames the Service: the slice follows.
    let patch = json!({"spec": {"useLegacyNaming": true}});
    agents
        .patch("agent", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_slices(&f.client, &f.ns, "agent", |s| s.len() == 1).await?;
    wait_slices(&f.client, &f.ns, "vmagent-agent", <[_]>::is_empty).await?;

    // Gone with the VMAgent.
    agents.delete("agent", &Default::default()).await?;
    wait_slices(&f.client, &f.ns, "agent", <[_]>::is_empty).await?;
    let (code, _) = get_through_proxy(proxy, address, VMAGENT_PORT).await?;
    assert_eq!(code, 502, "the VMAgent is deleted");
    Ok(())
}
