//! The chart's controller settings against the real controller binary: it runs with the
//! installed Deployment's arguments and environment and a token of the chart's controller
//! ServiceAccount, so its start-up checks (the CRD served is the chart's, every permission it
//! needs is granted), leader election on the chart's Lease and its first writes to children and
//! the CR all go through exactly the RBAC the chart grants.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use harness::chart::{Rendered, chart_dir, readyz, run_ok, set_args};
use harness::{ControlPlane, ProcessSpec, free_port};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const RELEASE: &str = "vmd";
const POD_NAME: &str = "vmd-vmdistributed-controller-5f7c9-abcde";

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            bail!("{what} not within {timeout:?} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn controller_starts_leads_and_writes_with_the_charts_rbac() -> Result<()> {
    harness::install_crypto_provider();
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    // Only the upstream VictoriaMetrics CRDs come from the harness; the VMDistributed CRD comes
    // from the chart, and the controller checks at start that it is this project's.
    harness::install_vm_operator_crds(&client, &harness::MANAGED_KINDS).await?;
    cp.ensure_sim_operator().await?;
    let ns = harness::create_namespace(&client, "chart-controller").await?;

    // No webhook runs in this test: keep the chart's webhooks away from the test namespace.
    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?;
    run_ok(
        cp.helm()?
            .args(["install", RELEASE, chart, "-n", &ns])
            .args(set_args(&[
                "webhook.namespaceSelector.matchLabels.admission=enabled",
            ])),
    )?;
    let manifest = Rendered::parse(&String::from_utf8(
        run_ok(cp.helm()?.args(["get", "manifest", RELEASE, "-n", &ns]))?.stdout,
    )?)?;
    let deployment = manifest.deployment("controller")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let account = pod["serviceAccountName"]
        .as_str()
        .context("serviceAccountName")?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = cp.service_account_kubeconfig(&ns, account, dir.path())?;

    // The Deployment's arguments, with only the listen address moved to a loopback port.
    let http_port = free_port()?;
    let mut args = Vec::new();
    for arg in container["args"].as_array().context("args")? {
        let arg = arg.as_str().context("string arg")?;
        args.push(if arg.starts_with("--http-addr=") {
            format!("--http-addr=127.0.0.1:{http_port}")
        } else {
            arg.to_owned()
        });
    }
    args.push(format!("--kubeconfig={}", kubeconfig.display()));
    // The downward-API variables the chart sets, with the values a pod would get.
    let log = cp.log_path("chart-controller-log");
    // vmagent `/metrics` of the shared simulator's VMAgents through its proxy, as every
    // controller the tests start.
    let proxy = cp
        .sim_agent_metrics_proxy()
        .context("the shared simulator has no agent metrics proxy")?;
    let spec = ProcessSpec::new(harness::controller_binary()?, &log)
        .args(args.clone())
        .agent_metrics_proxy(proxy);
    let spec = container["env"]
        .as_array()
        .context("env")?
        .iter()
        .try_fold(spec, |spec, var| -> Result<ProcessSpec> {
            let name = var["name"].as_str().context("env name")?;
            let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => POD_NAME.to_owned(),
                Some("metadata.namespace") => ns.clone(),
                _ => var["value"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("env {name} has no value"))?,
            };
            Ok(spec.env(name, value))
        })?;
    let _controller = cp.spawn(spec)?;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready means: the served CRD is the chart's and the SelfSubjectAccessReviews of every
    // permission it needs were allowed for the chart's ServiceAccount.
    eventually(
        "controller /readyz 200",
        Duration::from_secs(60),
        || async {
            Ok(readyz(http_port)
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200")))
        },
    )
    .await
    .with_context(|| {
        format!(
            "controller {args:?}; /readyz {:?}; log:\n{}",
            readyz(http_port).ok(),
            log_text()
        )
    })?;

    // It holds the chart's Lease, which its Role limits by name.
    let lease_name = args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .context("--lease-name")?
        .to_owned();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    eventually(
        "the Lease held by the pod",
        Duration::from_secs(30),
        || async {
            let lease = leases.get_opt(&lease_name).await?;
            Ok(lease
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .filter(|holder| holder == POD_NAME))
        },
    )
    .await
    .with_context(log_text)?;

    // Its first writes: the finalizer on the CR, the zones' children, the status.
    let seed = std::fs::read_to_string(harness::workspace_root().join("examples/seed.yaml"))?;
    harness::apply_yaml(&client, Some(&ns), &seed).await?;
    let seed_object = harness::parse_yaml_documents(&seed)?
        .into_iter()
        .next()
        .context("seed document")?;
    let (vmds, _) = harness::resources::dynamic_api_for(&client, Some(&ns), &seed_object).await?;
    let cr = eventually(
        "finalizer and status on the CR",
        Duration::from_secs(60),
        || async {
            let cr = serde_json::to_value(vmds.get("demo").await?)?;
            let finalized = cr["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            let observed = cr["status"]["observedGeneration"].is_u64();
            Ok((finalized && observed).then_some(cr))
        },
    )
    .await
    .with_context(log_text)?;
    ensure!(
        cr["status"]["conditions"].is_array(),
        "status conditions written: {}",
        cr["status"]
    );
    for zone in ["zone-a", "zone-b"] {
        let child = serde_json::json!({
            "apiVersion": "operator.victoriametrics.com/v1beta1",
            "kind": "VMCluster",
            "metadata": {"name": format!("demo-{zone}")}
        });
        let (clusters, name) =
            harness::resources::dynamic_api_for(&client, Some(&ns), &child).await?;
        eventually(
            &format!("VMCluster {name}"),
            Duration::from_secs(60),
            || async { Ok(clusters.get_opt(&name).await?) },
        )
        .await
        .with_context(log_text)?;
    }
    let text = log_text();
    ensure!(
        !text.contains("forbidden"),
        "the controller hit a permission it lacks:\n{text}"
    );
    Ok(())
}
