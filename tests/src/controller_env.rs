//! The world of the controller's end-to-end tests: a namespace with the simulated VM operator
//! (or on the real-operator tier), the controller as a real process, and waiting helpers. The
//! recorder that keeps every state of the CR and its children and checks the rollout invariants
//! on each of them is [`crate::state_recorder`].

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use shared::VMDistributed;
use shared::names::ChildKind;
use vmdistributed_runtime::resources;

use crate::control_plane::ControlPlane;
use crate::net::{free_port, http_get};
use crate::supervisor::{ProcessSpec, SupervisedProcess};

/// Field manager of the controller.
pub const CONTROLLER_MANAGER: &str = shared::model::FIELD_MANAGER;
/// Annotation that keeps the simulated operator from ever reporting a child operational.
pub const SIM_STUCK: &str = "sim.vmdistributed.io/stuck";

/// A test's world: the shared control plane, a fresh namespace and a simulated VM operator
/// watching it.
pub struct Env {
    /// The control plane.
    pub cp: &'static ControlPlane,
    /// Admin client.
    pub client: Client,
    /// This test's namespace.
    pub ns: String,
    /// The simulated operator of this namespace; `None` on the real-operator tier.
    sim: Option<SupervisedProcess>,
    /// The `HTTP_PROXY` of the controllers started here: the simulator's or the operator
    /// world's agent metrics proxy ([`crate::vmagent_standin`]).
    agent_metrics_proxy: String,
}

impl Env {
    /// Start a namespace and a simulated operator that reports `operational` `ready_delay`
    /// after each spec change.
    pub async fn new(prefix: &str, ready_delay: &str) -> Result<Self> {
        crate::install_crypto_provider();
        let cp = ControlPlane::shared().await?;
        cp.install_crds().await?;
        Self::on(cp, prefix, ready_delay).await
    }

    /// As [`Env::new`], on a control plane of the test's own (whose CRDs it installs itself:
    /// tests that remove CRDs must not share theirs).
    pub async fn on(cp: &'static ControlPlane, prefix: &str, ready_delay: &str) -> Result<Self> {
        crate::install_crypto_provider();
        let client = cp.client().await?;
        let ns = crate::create_namespace(&client, prefix).await?;
        let (spec, agent_metrics_proxy) =
            crate::sim::sim_operator_spec(cp.log_path(&format!("sim-{ns}")))?;
        let sim = cp.spawn_sim_operator(
            spec.args([
                "--ready-delay".to_owned(),
                ready_delay.to_owned(),
                "--namespace".to_owned(),
                ns.clone(),
                "--kubeconfig".to_owned(),
                cp.kubeconfig_path().display().to_string(),
            ]),
            agent_metrics_proxy,
        )?;
        sim.wait_ready().await?;
        let agent_metrics_proxy = sim.agent_metrics_proxy().to_owned();
        Ok(Self {
            cp,
            client,
            ns,
            sim: Some(sim.process),
            agent_metrics_proxy,
        })
    }

    /// A namespace on the real-operator tier: the real VictoriaMetrics operator (all namespaces)
    /// with kube-scheduler, kube-controller-manager and kwok nodes turns the children into
    /// workloads and pods (see `crate::operator_world`). No simulator runs in it.
    pub async fn with_operator(prefix: &str) -> Result<Self> {
        crate::install_crypto_provider();
        let cp = ControlPlane::shared().await?;
        cp.ensure_operator_world().await?;
        let client = cp.client().await?;
        let ns = crate::create_namespace(&client, prefix).await?;
        let agent_metrics_proxy = cp
            .operator_world()
            .ok_or_else(|| anyhow!("the operator world did not start"))?
            .agent_metrics_proxy();
        Ok(Self {
            cp,
            client,
            ns,
            sim: None,
            agent_metrics_proxy,
        })
    }

    /// `http://127.0.0.1:PORT`: the proxy answering the `/metrics` of this namespace's VMAgents
    /// (the simulator's, or the operator world's), which every controller started here gets as
    /// `HTTP_PROXY`. Set what an agent reports with the annotations of
    /// [`crate::vmagent_standin`].
    pub fn agent_metrics_proxy(&self) -> &str {
        &self.agent_metrics_proxy
    }

    /// Start the controller for this namespace without leader election.
    pub fn controller(&self) -> Result<Controller> {
        self.controller_with(&["--leader-elect=false"])
    }

    /// Start the controller for this namespace with extra flags.
    pub fn controller_with(&self, extra: &[&str]) -> Result<Controller> {
        let port = free_port()?;
        let log = self.cp.log_path(&format!("controller-{}", self.ns));
        let mut args = vec![
            "run".to_owned(),
            "--kubeconfig".to_owned(),
            self.cp.kubeconfig_path().display().to_string(),
            "--http-addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--watch-namespace".to_owned(),
            self.ns.clone(),
            "--lease-namespace".to_owned(),
            self.ns.clone(),
            "--log-level".to_owned(),
            "info,vmdistributed_controller=debug".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let process = self.cp.spawn(
            ProcessSpec::new(crate::controller_binary()?, log)
                .args(args)
                .agent_metrics_proxy(&self.agent_metrics_proxy),
        )?;
        Ok(Controller { process, port })
    }

    /// Start the controller as [`Env::controller`] does and wait until it is ready.
    pub async fn ready_controller(&self) -> Result<Controller> {
        let controller = self.controller()?;
        controller.wait_ready(Duration::from_secs(30)).await?;
        Ok(controller)
    }

    /// Start the controller, apply `yaml` once it is ready and wait until the CR `name` is
    /// operational; the controller and the operational CR.
    pub async fn operational(
        &self,
        name: &str,
        yaml: &str,
        timeout: Duration,
    ) -> Result<(Controller, VMDistributed)> {
        let controller = self.ready_controller().await?;
        self.apply(yaml).await?;
        let cr = self.wait_operational(name, timeout).await?;
        Ok((controller, cr))
    }

    /// Start two replicas of the controller, `replica-one` and `replica-two`, electing a leader
    /// on a 4 s Lease, and wait until both are ready.
    pub async fn replicas(&self) -> Result<(Controller, Controller)> {
        let replica = |identity: &str| {
            self.controller_with(&[
                "--leader-elect=true",
                "--identity",
                identity,
                "--lease-duration-seconds",
                "4",
            ])
        };
        let first = replica("replica-one")?;
        let second = replica("replica-two")?;
        first.wait_ready(Duration::from_secs(30)).await?;
        second.wait_ready(Duration::from_secs(30)).await?;
        Ok((first, second))
    }

    /// The [`Env::replicas`] as (leader, follower, the follower's identity), by the Lease holder.
    pub async fn leader_and_follower(
        &self,
        (first, second): (Controller, Controller),
    ) -> Result<(Controller, Controller, &'static str)> {
        let leader_name = self
            .lease_holder()
            .await?
            .ok_or_else(|| anyhow!("nobody holds the Lease"))?;
        Ok(if leader_name == "replica-one" {
            (first, second, "replica-two")
        } else {
            (second, first, "replica-one")
        })
    }

    /// Server-side apply of YAML documents as the test user.
    pub async fn apply(&self, yaml: &str) -> Result<()> {
        crate::apply_yaml(&self.client, Some(&self.ns), yaml).await?;
        Ok(())
    }

    /// The VMDistributed API of this namespace.
    pub fn crs(&self) -> Api<VMDistributed> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The API of a child kind in this namespace.
    pub fn children(&self, kind: ChildKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &resources::child(kind))
    }

    /// A child, if it exists.
    pub async fn child(&self, kind: ChildKind, name: &str) -> Result<Option<DynamicObject>> {
        Ok(self.children(kind).get_opt(name).await?)
    }

    /// A child as JSON; error when missing.
    pub async fn child_value(&self, kind: ChildKind, name: &str) -> Result<Value> {
        let obj = self
            .child(kind, name)
            .await?
            .ok_or_else(|| anyhow!("{kind} {name} does not exist"))?;
        Ok(serde_json::to_value(obj)?)
    }

    /// Fails naming the first of these children that still exists.
    pub async fn ensure_gone(&self, children: &[(ChildKind, &str)]) -> Result<()> {
        for (kind, name) in children {
            ensure!(
                self.child(*kind, name).await?.is_none(),
                "created {kind} {name} survived"
            );
        }
        Ok(())
    }

    /// The `url` of each `remoteWrite` entry of the VMAgent `name`, in order.
    pub async fn remote_write_urls(&self, name: &str) -> Result<Vec<String>> {
        let agent = self.child_value(ChildKind::VMAgent, name).await?;
        Ok(agent["spec"]["remoteWrite"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e["url"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Merge-patch a CR's spec (as the user).
    pub async fn patch_spec(&self, name: &str, spec: Value) -> Result<()> {
        self.crs()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?;
        Ok(())
    }

    /// Merge-patch a child's metadata (annotations, labels) as the user.
    pub async fn patch_child_meta(&self, kind: ChildKind, name: &str, meta: Value) -> Result<()> {
        self.children(kind)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": meta })),
            )
            .await?;
        Ok(())
    }

    /// Wait until the CR satisfies `pred`; the error shows the last status seen.
    pub async fn wait_cr(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&VMDistributed) -> bool,
    ) -> Result<VMDistributed> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(cr) = self.crs().get_opt(name).await? {
                if pred(&cr) {
                    return Ok(cr);
                }
                last = Some(cr);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last status: {}",
                    last.and_then(|c| c.status)
                        .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                        .unwrap_or_else(|| "none".to_owned())
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Wait until the rollout of `name` halts on `zone` (`Degraded=True`), and check it halted as
    /// a zone that never became ready does: status `failed`, reason `ZoneNotReady`, the zone
    /// still in phase `Applying`.
    pub async fn wait_halted_in_applying(
        &self,
        name: &str,
        zone: &str,
        timeout: Duration,
    ) -> Result<VMDistributed> {
        let failed = self
            .wait_cr(name, timeout, "Degraded", |cr| {
                condition(cr, "Degraded").is_some_and(|c| c.status == "True")
            })
            .await?;
        let status = failed.status.clone().unwrap_or_default();
        ensure!(
            status.update_status == Some(shared::api::UpdateStatus::Failed),
            "{status:?}"
        );
        ensure!(
            condition(&failed, "Degraded").map(|c| c.reason.as_str()) == Some("ZoneNotReady"),
            "{status:?}"
        );
        let rollout = status.rollout.clone().unwrap_or_default();
        ensure!(
            rollout.zone.as_deref() == Some(zone)
                && rollout.phase == Some(shared::api::ZonePhase::Applying),
            "{rollout:?}"
        );
        Ok(failed)
    }

    /// Wait until the CR is `operational` with `Ready=True` for its current generation.
    pub async fn wait_operational(&self, name: &str, timeout: Duration) -> Result<VMDistributed> {
        self.wait_cr(name, timeout, "operational", is_operational)
            .await
    }

    /// Wait until the CR `name` no longer exists.
    pub async fn wait_cr_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, "the CR is gone", || async {
            Ok(self.crs().get_opt(name).await?.is_none())
        })
        .await
    }

    /// Wait until something holds, polling (see [`crate::wait_until`]).
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, what: &str, check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        crate::wait_until(timeout, what, check).await
    }

    /// Events (events.k8s.io) regarding the CR `name`, as (type, reason, note), each repeated as
    /// often as it occurred (an event series counts every occurrence).
    pub async fn events(&self, name: &str) -> Result<Vec<(String, String, String)>> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        let list = api.list(&Default::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("VMDistributed")
            })
            .flat_map(|e| {
                let count = e.series.as_ref().map_or(1, |s| s.count.max(1));
                let entry = (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                );
                std::iter::repeat_n(entry, usize::try_from(count).unwrap_or(1))
            })
            .collect())
    }

    /// The events of `type_` and `reason` regarding the CR `name`, as [`Env::events`] gives them.
    pub async fn events_of(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
    ) -> Result<Vec<(String, String, String)>> {
        let mut events = self.events(name).await?;
        events.retain(|(t, r, _)| t == type_ && r == reason);
        Ok(events)
    }

    /// Wait until an event of `type_` and `reason` regarding the CR `name` was recorded.
    pub async fn wait_event(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.wait_until(timeout, &format!("a {type_} event {reason}"), || async {
            Ok(!self.events_of(name, type_, reason).await?.is_empty())
        })
        .await
    }

    /// The identity holding the controller's Lease in this namespace, if anyone does.
    pub async fn lease_holder(&self) -> Result<Option<String>> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        Ok(leases
            .get_opt("vmdistributed-controller")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }

    /// The sim operator's PID, if this namespace has one.
    pub fn sim_pid(&self) -> Option<u32> {
        self.sim.as_ref().map(SupervisedProcess::pid)
    }
}

/// A running controller process.
pub struct Controller {
    /// The process.
    pub process: SupervisedProcess,
    /// Its HTTP port.
    pub port: u16,
}

impl Controller {
    /// GET a path of the controller's HTTP port; (status code, body).
    pub async fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.port, path).await
    }

    /// The value of a metric (first sample whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> Result<f64> {
        let (_, body) = self.http_get("/metrics").await?;
        Ok(body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0))
    }

    /// Wait until /readyz answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = self.http_get("/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "controller not ready after {timeout:?}; log:\n{}",
                    self.process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Total writes the controller counted (all verbs).
    pub async fn writes(&self) -> Result<f64> {
        let (_, body) = self.http_get("/metrics").await?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with("vmdistributed_child_writes_total"))
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .sum())
    }
}

/// Operational, Ready=True, status for the current generation.
pub fn is_operational(cr: &VMDistributed) -> bool {
    let Some(status) = &cr.status else {
        return false;
    };
    status.update_status == Some(shared::api::UpdateStatus::Operational)
        && status.observed_generation == cr.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The condition of a type, if present.
pub fn condition<'a>(
    cr: &'a VMDistributed,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    cr.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// A controller started by hand rather than through an [`Env`]: `run` with `kubeconfig`, no
/// leader election, health and metrics on `127.0.0.1:{http_port}`, watching `namespace` (every
/// namespace when `None`), logging to the control plane's `log_name` log. Add flags with
/// [`ProcessSpec::args`], the vmagent proxy with [`ProcessSpec::agent_metrics_proxy`].
///
/// # Errors
/// When the controller binary cannot be found or built.
pub fn standalone_controller(
    cp: &ControlPlane,
    log_name: &str,
    kubeconfig: &std::path::Path,
    namespace: Option<&str>,
    http_port: u16,
) -> Result<ProcessSpec> {
    let mut args = vec![
        "run".to_owned(),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--leader-elect=false".to_owned(),
        format!("--http-addr=127.0.0.1:{http_port}"),
    ];
    args.extend(namespace.map(|ns| format!("--watch-namespace={ns}")));
    Ok(ProcessSpec::new(crate::controller_binary()?, cp.log_path(log_name)).args(args))
}
