//! The real VictoriaMetrics operator world: kwok nodes, scheduler, controller manager, the
//! operator and the pod stand-in bring VMCluster, VMAgent, VMSingle and VMAuth to `operational`;
//! vmagent pods are published in EndpointSlices of the stand-in and answered through its proxy.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use harness::operator_world::{config_reloader_hash, rss_bytes};
use harness::vmagent_standin::{
    MANAGED_BY, PENDING_BYTES_ANNOTATION, VMAGENT_PORT, get_through_proxy,
};
use harness::{ControlPlane, KWOK_NODES, apply_yaml_with, create_namespace};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use shared::names::ChildKind;
use vmdistributed_runtime::resources;

const OPERATIONAL_TIMEOUT: Duration = Duration::from_secs(120);

const CLUSTER: &str = "main";
const AGENT: &str = "write";
const SINGLE: &str = "read";
const AUTH: &str = "front";

fn api(client: &Client, ns: &str, kind: ChildKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resources::child(kind))
}

fn manifests(ns: &str) -> String {
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1beta1
kind: VMCluster
metadata:
  name: {CLUSTER}
spec:
  retentionPeriod: "1"
  vmstorage:
    replicaCount: 1
    storage:
      volumeClaimTemplate:
        spec:
          resources:
            requests:
              storage: 1Gi
  vmselect:
    replicaCount: 1
  vminsert:
    replicaCount: 1
---
apiVersion: operator.victoriametrics.com/v1beta1
kind: VMAgent
metadata:
  name: {AGENT}
spec:
  ingestOnlyMode: true
  replicaCount: 1
  remoteWrite:
  - url: http://vminsert-{CLUSTER}.{ns}.svc:8480/insert/0/prometheus/api/v1/write
---
apiVersion: operator.victoriametrics.com/v1beta1
kind: VMSingle
metadata:
  name: {SINGLE}
spec:
  retentionPeriod: "1"
  storage:
    resources:
      requests:
        storage: 1Gi
"#
    )
}

fn target_ref(name: &str, kind: &str, object: &str, ns: &str, path: &str) -> Value {
    json!({
        "name": name,
        "crd": {"kind": kind, "name": "", "namespace": "", "objects": [{"name": object, "namespace": ns}]},
        "paths": [path],
    })
}

/// The VMAuth with `waitForConfigReload`; `refs` are its default target refs, all of which the
/// unauthorized-user route uses, so each one changes the generated config.
fn vmauth(ns: &str, refs: &[Value]) -> Value {
    let names: Vec<Value> = refs.iter().map(|r| json!({"name": r["name"]})).collect();
    json!({
        "apiVersion": "operator.victoriametrics.com/v1beta1",
        "kind": "VMAuth",
        "metadata": {"name": AUTH, "namespace": ns},
        "spec": {
            "waitForConfigReload": true,
            "replicaCount": 1,
            "defaultTargetRefs": refs,
            "unauthorizedUserAccessSpec": {"targetRefs": names},
        },
    })
}

fn strict() -> PatchParams {
    PatchParams::apply(harness::FIELD_MANAGER)
        .force()
        .validation_strict()
}

async fn apply(client: &Client, ns: &str, yaml: &str) -> Result<()> {
    apply_yaml_with(client, Some(ns), yaml, &strict()).await?;
    Ok(())
}

async fn apply_object(client: &Client, ns: &str, object: Value) -> Result<()> {
    harness::apply_value(client, Some(ns), object, &strict()).await?;
    Ok(())
}

/// Waits until `updateStatus` is operational for at least `min_generation`; returns the
/// generation seen.
async fn wait_operational(
    api: &Api<DynamicObject>,
    name: &str,
    min_generation: i64,
) -> Result<i64> {
    let deadline = Instant::now() + OPERATIONAL_TIMEOUT;
    loop {
        let obj = api.get(name).await?;
        let generation = obj.metadata.generation.unwrap_or_default();
        let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
        let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
        let update = status["updateStatus"].as_str().unwrap_or_default();
        if generation >= min_generation && observed >= generation && update == "operational" {
            return Ok(generation);
        }
        if Instant::now() > deadline {
            bail!(
                "{name} not operational after {OPERATIONAL_TIMEOUT:?}: generation {generation}, status {status}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `GET http://{ip}:8435/metrics` from the config-reloader stand-in.
async fn reloader_metrics(ip: Ipv4Addr) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let addr = (ip, 8435).into();
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: reloader\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        anyhow::Ok(response)
    })
    .await
    .context("config-reloader request task")?
    .with_context(|| format!("GET http://{ip}:8435/metrics"))
}

fn reported_hash(metrics: &str) -> Option<u32> {
    metrics.lines().find_map(|l| {
        l.strip_prefix("configreloader_reload_content_hash{key=\"main\"} ")?
            .trim()
            .parse()
            .ok()
    })
}

async fn vmauth_config_hash(client: &Client, ns: &str) -> Result<u32> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("vmauth-config-{AUTH}"))
        .await?;
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml.gz"))
        .ok_or_else(|| anyhow!("VMAuth config Secret has no config.yaml.gz"))?;
    Ok(config_reloader_hash(&data.0))
}

#[tokio::test]
async fn the_real_operator_makes_every_managed_kind_operational() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let result = managed_kinds_become_operational(cp).await;

    if result.is_err()
        && let Some(world) = cp.operator_world()
    {
        // The control plane directory, logs included, is gone once the test process exits.
        for (name, _) in world.processes() {
            if let Some(path) = world.log_path(name) {
                let log = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                eprintln!("----- {name} log tail -----\n{tail}");
            }
        }
    }
    result
}

async fn managed_kinds_become_operational(cp: &ControlPlane) -> Result<()> {
    let began = Instant::now();
    cp.ensure_operator_world().await?;
    let world = cp
        .operator_world()
        .ok_or_else(|| anyhow!("operator world missing"))?;
    eprintln!(
        "operator world: started in {:?} (ensure took {:?}), pod CIDR {}",
        world.started_in(),
        began.elapsed(),
        world.pod_cidr()
    );
    let client = cp.client().await?;
    let ns = create_namespace(&client, "operator-world").await?;

    let applied = Instant::now();
    apply(&client, &ns, &manifests(&ns)).await?;
    let write = target_ref("write", "VMAgent", AGENT, &ns, "/insert/.+");
    apply_object(&client, &ns, vmauth(&ns, std::slice::from_ref(&write))).await?;

    let kinds = [
        (ChildKind::VMCluster, CLUSTER),
        (ChildKind::VMAgent, AGENT),
        (ChildKind::VMSingle, SINGLE),
        (ChildKind::VMAuth, AUTH),
    ];
    let waits = kinds.iter().map(|(kind, name)| {
        let api = api(&client, &ns, *kind);
        async move {
            let generation = wait_operational(&api, name, 1).await?;
            anyhow::Ok((kind.kind(), generation, applied.elapsed()))
        }
    });
    for (kind, generation, after) in futures::future::try_join_all(waits).await? {
        eprintln!("{kind} operational at generation {generation} after {after:?}");
    }

    // Every pod runs on a kwok node with a loopback IP from the world's range.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    let prefix = world.pod_cidr().trim_end_matches("0.0/16").to_owned();
    let mut components = Vec::new();
    for pod in &pods.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let (Some(node), Some(ip)) = (node, ip) else {
            bail!("pod {name} is not scheduled or has no IP");
        };
        let parsed: Ipv4Addr = ip.parse()?;
        if !KWOK_NODES.iter().any(|(n, _)| *n == node)
            || !parsed.is_loopback()
            || !ip.starts_with(&prefix)
        {
            bail!("pod {name} runs on {node} with IP {ip}, expected a kwok node and {prefix}x.y");
        }
        components.push(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/name").cloned())
                .unwrap_or_default(),
        );
    }
    components.sort();
    components.dedup();
    for wanted in [
        "vmagent",
        "vmauth",
        "vminsert",
        "vmselect",
        "vmsingle",
        "vmstorage",
    ] {
        if !components.iter().any(|c| c == wanted) {
            bail!("no {wanted} pod; pods are of {components:?}");
        }
    }

    // The stand-in reports the hash of the config the VMAuth pod runs with.
    let vmauth_pod = pods
        .items
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/name"))
                .is_some_and(|n| n == "vmauth")
        })
        .ok_or_else(|| anyhow!("no vmauth pod"))?;
    let vmauth_ip: Ipv4Addr = vmauth_pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .ok_or_else(|| anyhow!("vmauth pod has no IP"))?
        .parse()?;
    let first_hash = vmauth_config_hash(&client, &ns).await?;

    // A second target ref changes the generated config: the operator must now see the
    // config-reloader confirm the new content before it calls the VMAuth operational again.
    let auth_api = api(&client, &ns, ChildKind::VMAuth);
    let before = auth_api
        .get(AUTH)
        .await?
        .metadata
        .generation
        .unwrap_or_default();
    let read = target_ref("read", "VMSingle", SINGLE, &ns, "/select/.+");
    let changed = Instant::now();
    apply_object(&client, &ns, vmauth(&ns, &[write, read])).await?;
    let generation = wait_operational(&auth_api, AUTH, before + 1).await?;
    eprintln!(
        "VMAuth operational again at generation {generation} after {:?}",
        changed.elapsed()
    );
    let second_hash = vmauth_config_hash(&client, &ns).await?;
    if second_hash == first_hash {
        bail!("the VMAuth config did not change; the reload wait was not exercised");
    }
    let metrics = reloader_metrics(vmauth_ip).await?;
    if reported_hash(&metrics) != Some(second_hash) {
        bail!("stand-in at {vmauth_ip} reports {metrics:?}, expected hash {second_hash}");
    }
    // The operator itself asked for it (the stand-in logs every answer).
    let standin_log = world
        .log_path("vm-pod-standin")
        .map(std::fs::read_to_string)
        .transpose()?
        .unwrap_or_default();
    let asked = standin_log.lines().any(|l| {
        l.contains("config-reloader metrics") && l.contains(&format!("hash={second_hash}"))
    });
    if !asked {
        bail!("the operator never read the new hash from the stand-in; log:\n{standin_log}");
    }

    // Deleting the VMAuth removes its pod; the stand-in stops answering on that pod's IP.
    let deleted = Instant::now();
    auth_api.delete(AUTH, &Default::default()).await?;
    while reloader_metrics(vmauth_ip).await.is_ok() {
        if deleted.elapsed() > OPERATIONAL_TIMEOUT {
            bail!(
                "{vmauth_ip}:8435 still answers {OPERATIONAL_TIMEOUT:?} after the VMAuth was deleted"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "stand-in stopped serving {vmauth_ip}:8435 {:?} after the VMAuth was deleted",
        deleted.elapsed()
    );

    // cp.pids() starts with the supervisor, etcd and kube-apiserver.
    let base = cp.pids();
    let mut report = Vec::new();
    let mut total = 0;
    for (name, pid) in ["envtest-supervisor", "etcd", "kube-apiserver"]
        .into_iter()
        .zip(base.iter().copied())
        .chain(
            cp.controller_manager_pid()
                .map(|p| ("kube-controller-manager", p)),
        )
        .chain(world.processes())
    {
        let rss = rss_bytes(pid)?;
        total += rss;
        report.push(format!("{name} {} MiB", rss >> 20));
    }
    eprintln!("RSS: {}; total {} MiB", report.join(", "), total >> 20);
    Ok(())
}

/// A VMAgent with two pods and two remote writes.
const MIRRORED_AGENT: &str = "mirrored";

fn mirrored_agent_yaml() -> String {
    format!(
        r#"apiVersion: operator.victoriametrics.com/v1beta1
kind: VMAgent
metadata:
  name: {MIRRORED_AGENT}
spec:
  ingestOnlyMode: true
  replicaCount: 2
  remoteWrite:
  - url: http://vminsert-a:8480/insert/0/prometheus/api/v1/write
  - url: http://vminsert-b:8480/insert/0/prometheus/api/v1/write
"#
    )
}

#[tokio::test]
async fn vmagent_pods_are_mirrored_into_endpoint_slices_and_answered_through_the_proxy()
-> Result<()> {
    let cp = ControlPlane::shared().await?;
    cp.ensure_operator_world().await?;
    let world = cp
        .operator_world()
        .ok_or_else(|| anyhow!("operator world missing"))?;
    let proxy = world.agent_metrics_proxy();
    let client = cp.client().await?;
    let ns = create_namespace(&client, "vmagent-mirror").await?;
    apply(&client, &ns, &mirrored_agent_yaml()).await?;
    let agents = api(&client, &ns, ChildKind::VMAgent);
    wait_operational(&agents, MIRRORED_AGENT, 1).await?;

    // The Ready vmagent pods, at the addresses the mirror publishes them.
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/name=vmagent,app.kubernetes.io/instance={MIRRORED_AGENT}"
        )))
        .await?;
    let mut expected: Vec<String> = pods
        .items
        .iter()
        .filter_map(harness::vmagent_standin::mirrored_address)
        .map(|ip| ip.to_string())
        .collect();
    expected.sort();
    assert_eq!(
        expected.len(),
        2,
        "two Ready vmagent pods: {:?}",
        pods.items
    );

    let service = format!("vmagent-{MIRRORED_AGENT}");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let of_service = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let deadline = Instant::now() + OPERATIONAL_TIMEOUT;
    let (controller_manager_slices, mirrored) = loop {
        let all = slices.list(&of_service).await?.items;
        let (ours, theirs): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                .is_some_and(|m| m == MANAGED_BY)
        });
        let mut addresses: Vec<String> = ours
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        addresses.sort();
        if addresses == expected && !theirs.is_empty() {
            break (theirs, ours);
        }
        if Instant::now() > deadline {
            bail!(
                "slices of {service}: mirrored addresses {addresses:?} (want {expected:?}), \
                 kube-controller-manager's {theirs:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Why the mirror exists: kube-controller-manager cannot publish loopback pod IPs.
    for slice in &controller_manager_slices {
        assert!(
            slice.endpoints.is_empty(),
            "kube-controller-manager's slice {:?} of {service} lists endpoints, but the API \
             server refuses loopback pod IPs in EndpointSlices, so it should stay empty (and the \
             mirror would be unnecessary): {:?}",
            slice.metadata.name,
            slice.endpoints
        );
    }
    assert_eq!(mirrored.len(), 1, "{mirrored:?}");
    assert_eq!(
        mirrored[0].metadata.name.as_deref(),
        Some(format!("{service}-standin").as_str())
    );
    let port = mirrored[0].ports.as_ref().and_then(|p| p.first()).cloned();
    assert_eq!(
        port.as_ref().map(|p| (p.name.as_deref(), p.port)),
        Some((Some("http"), Some(i32::from(VMAGENT_PORT))))
    );

    // Every mirrored pod answers through the proxy with one series per remote write.
    for address in &expected {
        let (code, body) = get_through_proxy(&proxy, address.parse()?, VMAGENT_PORT).await?;
        assert_eq!(code, 200, "{address}: {body}");
        let series = body.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(series, 2, "{address}: {body}");
        assert!(
            body.contains(
                "vmagent_remotewrite_pending_data_bytes{path=\"/tmp/vmagent-remotewrite-data/persistent-queue/2_0000000000000000\",url=\"2:secret-url\"} 0\n"
            ),
            "{body}"
        );
    }

    // The annotation on the VMAgent sets what its pods report.
    let patch = json!({"metadata": {"annotations": {PENDING_BYTES_ANNOTATION: "1=4096"}}});
    agents
        .patch(
            MIRRORED_AGENT,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get_through_proxy(&proxy, expected[0].parse()?, VMAGENT_PORT).await?;
        if body.contains("persistent-queue/1_0000000000000000\",url=\"1:secret-url\"} 4096\n") {
            break;
        }
        if Instant::now() > deadline {
            bail!("the pending-bytes annotation is not reported: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (answered, by_agent) = harness::vmagent_standin::answered(&proxy).await?;
    assert!(answered >= 3, "{answered} answers counted");
    assert!(
        by_agent
            .get(&format!("{ns}/{MIRRORED_AGENT}"))
            .copied()
            .unwrap_or(0)
            >= 3,
        "{by_agent:?}"
    );
    Ok(())
}
