//! `run`: start-up checks, health endpoints, leader election, and the kube-runtime controller
//! that runs only while this replica leads.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use shared::VMDistributed;
use shared::names::ChildKind;
use tokio::sync::watch;

use crate::backoff::{self, Backoff};
use crate::cache::name_index::NameIndex;
use crate::cache::watches as children;
use crate::cli::RunArgs;
use crate::crd_watch;
use crate::http::{self, Readiness};
use crate::leader::{Election, ElectionConfig, LeaderGate};
use crate::metrics::Metrics;
use crate::queue_probe::QueueProber;
use crate::reconcile::{self, Context, EventSink};
use crate::startup::{self, StartupProblem};
use crate::writer::{FIELD_MANAGER, Writer};

/// The annotation in which client-side `kubectl apply` keeps a whole copy of the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How often a retryable start-up problem (a foreign CRD) is checked again.
const RECHECK: Duration = Duration::from_secs(10);

/// Run the controller until SIGTERM or SIGINT.
///
/// # Errors
/// Configuration problems and start-up checks that cannot pass without a change.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = client(&args).await?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new("starting"));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(wait_for_signal(shutdown_tx));

    let http_task = http::serve(
        args.http_addr,
        http::router(readiness.clone(), metrics.clone()),
        stopped(shutdown_rx.clone()),
    )
    .await?;

    let identity = args.effective_identity();
    let lease_namespace = args.effective_lease_namespace();
    if !checks_pass(
        &client,
        &args,
        &lease_namespace,
        &readiness,
        shutdown_rx.clone(),
    )
    .await?
    {
        let _ = http_task.await;
        return Ok(());
    }

    let election = if args.leader_elect {
        tracing::info!(%identity, lease = %format!("{lease_namespace}/{}", args.lease_name), "waiting to lead");
        Election::start(
            client.clone(),
            ElectionConfig {
                lease_name: args.lease_name.clone(),
                namespace: lease_namespace,
                identity: identity.clone(),
                duration_seconds: args.lease_duration_seconds,
            },
        )
        .await?
    } else {
        Election::disabled()
    };

    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(identity.clone()),
    };
    // This project's CRD passed the checks at start; the guard finds which child CRDs are
    // served (and sets readiness), and a later change is checked again and restarts the
    // controller, so that nothing judged under the old definitions is kept.
    let crds = crd_watch::guard(
        &client,
        readiness.clone(),
        reporter.clone(),
        election.acting.clone(),
    )
    .await;
    let mut usable = crds.usable.clone();
    let mut acting = election.acting.clone();
    let mut shutdown = shutdown_rx.clone();
    loop {
        metrics.set_leader(false);
        // Only the acting replica's per-object gauges are current; a replica that stopped
        // acting (or restarts the controller) shows none rather than stale ones.
        metrics.forget_objects();
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            lead = acting.wait_for(|a| *a) => if lead.is_err() { break },
        }
        if !*usable.borrow() {
            tracing::info!("waiting for usable CustomResourceDefinitions before reconciling");
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = acting.wait_for(|a| !*a) => continue,
                ok = usable.wait_for(|u| *u) => if ok.is_err() { break },
            }
        }
        tracing::info!(%identity, "leading: starting the controller");
        metrics.set_leader(true);
        let stop = {
            let mut acting = acting.clone();
            let mut shutdown = shutdown_rx.clone();
            let mut restarts = crds.restarts.clone();
            restarts.borrow_and_update();
            async move {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => {}
                    _ = acting.wait_for(|a| !*a) => {}
                    _ = restarts.changed() => {}
                }
            }
        };
        let served = crds.served.borrow().clone();
        run_controller(
            client.clone(),
            &args,
            &served,
            election.gate.clone(),
            reporter.clone(),
            metrics.clone(),
            stop,
        )
        .await;
        if *shutdown_rx.borrow() {
            break;
        }
        if *acting.borrow() {
            tracing::info!(
                "a CustomResourceDefinition changed: restarting the controller with fresh caches"
            );
            continue;
        }
        tracing::warn!(%identity, "lost the lease: stopped acting");
    }
    metrics.set_leader(false);
    tracing::info!("shutting down: releasing the lease");
    election.shutdown().await;
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The kube-runtime controller over the CRs and the children of the `served` kinds, writing
/// and publishing events behind `gate`, until `stop`.
async fn run_controller(
    client: Client,
    args: &RunArgs,
    served: &[ChildKind],
    gate: Arc<LeaderGate>,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = args.watch_namespace.as_deref();
    let pinned_versions = args.pins.pinned_versions();
    if served.len() < ChildKind::ALL.len() {
        tracing::warn!(
            ?served,
            "watching only the child kinds whose CRDs are served; objects that need another wait"
        );
    }
    let (stores, streams) = children::watch_all(&client, namespace, served);
    let backoff = Arc::new(Backoff::new(backoff::Policy::default(), metrics.clone()));
    tracing::info!(pinned = ?pinned_versions, "versions pinned where a spec sets none");
    let writer = Writer::new(client.clone(), Arc::clone(&gate), Arc::clone(&metrics));
    let events = EventSink {
        client: client.clone(),
        reporter,
        gate,
    };
    let context = Arc::new(
        Context::new(writer, stores, events, metrics)
            .with_queue_prober(QueueProber::from_env(client.clone()))
            .with_pinned_versions(pinned_versions)
            .with_preflight_recheck_base(args.preflight_recheck_base),
    );
    let crs: Api<VMDistributed> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    // managedFields and kubectl's last-applied copy of the object are dropped from the cache:
    // they are the largest part of most objects and the decision reads neither (status writes
    // go to the status subresource, which ignores metadata).
    let (cr_reader, cr_writer) = reflector::store();
    let live = cr_reader.clone();
    let forgetting = (Arc::clone(&context), Arc::clone(&backoff));
    let names = Arc::new(NameIndex::default());
    let cr_names = Arc::clone(&names);
    let cr_stream = watcher(crs, children::watcher_config())
        .default_backoff()
        .modify(|cr| {
            cr.managed_fields_mut().clear();
            cr.annotations_mut().remove(LAST_APPLIED);
        })
        .inspect_ok(move |event| cr_names.observe(event))
        .reflect(cr_writer)
        .inspect_ok(move |event| {
            // After a deletion, or a re-list that may have missed some: what this process
            // keeps per object (memory, metric series, backoff) goes with the object. The
            // store already reflects the event here.
            if matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone) {
                let live = live.state();
                forgetting.0.retain_objects(&live);
                forgetting.1.retain_objects(&live);
            }
        })
        .touched_objects();
    let mut controller = Controller::for_stream(cr_stream, cr_reader)
        .with_config(ControllerConfig::default().concurrency(args.concurrency));
    for (kind, stream) in streams {
        let names = Arc::clone(&names);
        controller = controller.watches_stream_with(
            stream,
            move |child| children::owners_of(kind, &child, &names),
            vmdistributed_runtime::resources::child(kind),
        );
    }
    controller
        .graceful_shutdown_on(stop)
        .run(
            move |cr, ctx| {
                let backoff = Arc::clone(&backoff);
                async move {
                    let step = reconcile::reconcile(Arc::clone(&cr), ctx);
                    backoff.reconcile(&cr, step).await
                }
            },
            reconcile::error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "controller stream");
            }
        })
        .await;
}

/// Start-up checks. `Ok(false)` when shut down while waiting for a retryable problem.
async fn checks_pass(
    client: &Client,
    args: &RunArgs,
    lease_namespace: &str,
    readiness: &Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let needed = startup::required_permissions(
        args.leader_elect
            .then_some((lease_namespace, args.lease_name.as_str())),
        args.watch_namespace.as_deref(),
    );
    // Missing VictoriaMetrics CRDs are not checked here: the controller runs without them
    // (crate::crd_watch::guard reports them).
    loop {
        let result = async {
            startup::check_crd(client).await?;
            startup::check_rbac(client, &needed).await
        }
        .await;
        match result {
            Ok(()) => return Ok(true),
            Err(problem) if problem.is_retryable() => {
                tracing::error!("refusing to reconcile: {problem}");
                readiness.set_not_ready(problem.to_string());
            }
            Err(problem) => return Err(fatal(problem)),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(false),
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

fn fatal(problem: StartupProblem) -> anyhow::Error {
    anyhow::anyhow!("{problem}")
}

async fn client(args: &RunArgs) -> anyhow::Result<Client> {
    let config = vmdistributed_runtime::kube_config::load(args.kubeconfig.as_deref()).await?;
    Client::try_from(config).map_err(|err| anyhow::anyhow!("cannot build the API client: {err}"))
}

async fn wait_for_signal(shutdown: watch::Sender<bool>) {
    vmdistributed_runtime::signals::terminated().await;
    let _ = shutdown.send(true);
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
