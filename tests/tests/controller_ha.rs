//! Leader election and crash safety with real controller processes: two replicas of which only
//! the Lease holder writes, a leader killed mid-rollout, and SIGKILL at seeded random moments of
//! 3-zone rollouts, which must land in every phase of the rollout. The rollout invariants are
//! checked on every recorded state by the shared checker.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use harness::controller_env::{Env, is_operational};
use harness::state_recorder::StateRecorder;
use kube::api::ListParams;
use nix::sys::signal::Signal;
use serde_json::json;
use shared::api::ZonePhase;

const LONG: Duration = Duration::from_secs(120);

fn manifest(name: &str, ready_timeout: &str, update_pause: &str) -> String {
    harness::manifests::three_zones(name, "v1.0.0-cluster", ready_timeout, update_pause)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_other_replica_finishes_after_it_dies() -> Result<()> {
    let env = Env::new("ctl-leader", "400ms").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    let replicas = env.replicas().await?;
    env.apply(&manifest("ha", "20s", "1s")).await?;
    env.wait_operational("ha", LONG).await?;

    let (leader, follower, follower_name) = env.leader_and_follower(replicas).await?;
    assert!(leader.writes().await? > 0.0, "the leader wrote nothing");
    assert_eq!(follower.writes().await?, 0.0, "the follower wrote");
    assert_eq!(leader.metric("vmdistributed_leader ").await?, 1.0);
    assert_eq!(follower.metric("vmdistributed_leader ").await?, 0.0);

    // Start a rollout and kill the leader while a zone is under update.
    env.patch_spec(
        "ha",
        json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": "v1.1.0-cluster"}}}}),
    )
    .await?;
    env.wait_cr("ha", LONG, "a zone in Applying", |cr| {
        cr.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.phase == Some(ZonePhase::Applying))
    })
    .await?;
    leader.process.signal(Signal::SIGKILL)?;
    env.wait_cr("ha", LONG, "rollout finished by the other replica", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(2)
    })
    .await?;
    assert_eq!(env.lease_holder().await?.as_deref(), Some(follower_name));
    assert!(
        follower.writes().await? > 0.0,
        "the new leader wrote nothing"
    );
    recorder.check("ha")?;

    // SIGTERM releases the Lease instead of letting it expire.
    follower.process.signal(Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if env.lease_holder().await?.is_none() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the Lease was not released on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(leader);
    Ok(())
}

/// The rollout phase the CR is in (`Idle` when none) and the current etcd revision (a quorum
/// list answers with it).
async fn rollout_phase_and_revision(env: &Env, name: &str) -> Result<(String, u64)> {
    let list = env.crs().list(&ListParams::default()).await?;
    let revision = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .context("a list without a numeric resourceVersion")?;
    let phase = list
        .items
        .iter()
        .find(|cr| cr.metadata.name.as_deref() == Some(name))
        .and_then(|cr| cr.status.as_ref()?.rollout.as_ref()?.phase)
        .map_or_else(|| "Idle".to_owned(), |phase| format!("{phase:?}"));
    Ok((phase, revision))
}

/// Revisions at which a child's spec changed (its generation went up): writes of the
/// controller, since the simulated operator writes only status.
fn child_write_revisions(records: &[harness::state_recorder::Record]) -> Vec<u64> {
    let mut generations: HashMap<String, i64> = HashMap::new();
    let mut revisions = Vec::new();
    for record in records
        .iter()
        .filter(|r| r.kind != "VMDistributed" && !r.deleted)
    {
        let uid = record.object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let generation = record.object["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0);
        if let Some(previous) = generations.insert(uid, generation)
            && generation > previous
            && let Some(rv) = record.rv
        {
            revisions.push(rv);
        }
    }
    revisions
}

/// A small deterministic generator (xorshift64*), so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_breaks_the_invariants() -> Result<()> {
    let seed: u64 = std::env::var("VMD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1234_ABCD);
    let budget = Duration::from_secs(
        std::env::var("VMD_CRASH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(150),
    );
    println!("crash trials: seed {seed}, budget {budget:?}");
    let mut rng = Rng(seed.max(1));
    let env = Env::new("ctl-crash", "300ms").await?;
    let recorder = StateRecorder::start(&env.client, &env.ns).await?;
    {
        let (_controller, _) = env
            .operational("crash", &manifest("crash", "30s", "300ms"), LONG)
            .await?;
    }

    let started = Instant::now();
    let mut trials = 0u32;
    let mut rollouts = 0u32;
    let mut version = 1;
    // Where each kill left the rollout, and the etcd revision right after it.
    let mut kill_phases: BTreeSet<String> = BTreeSet::new();
    let mut kill_revisions: Vec<u64> = Vec::new();
    let wanted: BTreeSet<String> = ["Excluding", "Applying", "Restoring"]
        .map(String::from)
        .into();
    // The budget, extended (up to twice) until a kill has landed in every phase.
    while started.elapsed() < budget
        || (!wanted.is_subset(&kill_phases) && started.elapsed() < budget * 2)
    {
        let cr = env.crs().get("crash").await?;
        if is_operational(&cr) {
            version += 1;
            rollouts += 1;
            env.patch_spec(
                "crash",
                json!({"zoneCommon": {"vmcluster": {"spec": {"clusterVersion": format!("v1.{version}.0-cluster")}}}}),
            )
            .await?;
        }
        let controller = env.controller()?;
        tokio::time::sleep(rng.millis(150, 2500)).await;
        controller.process.signal(Signal::SIGKILL)?;
        trials += 1;
        drop(controller);
        let (phase, revision) = rollout_phase_and_revision(&env, "crash").await?;
        kill_phases.insert(phase);
        kill_revisions.push(revision);
    }
    // A last replica finishes whatever rollout is in flight.
    let controller = env.controller()?;
    env.wait_cr("crash", LONG, "the last rollout finished", |cr| {
        is_operational(cr) && cr.metadata.generation == Some(i64::from(rollouts) + 1)
    })
    .await?;
    let replay = recorder.check("crash")?;
    let writes = child_write_revisions(&recorder.records());
    let productive = kill_revisions
        .windows(2)
        .filter(|pair| writes.iter().any(|rv| *rv > pair[0] && *rv <= pair[1]))
        .count();
    println!(
        "crash trials: {trials} SIGKILLs over {rollouts} rollouts, {} states checked, {} zone writes, \
         kills in phases {kill_phases:?}, child writes between {productive} of {} pairs of kills",
        replay.states,
        replay.child_spec_writes.len(),
        kill_revisions.len().saturating_sub(1)
    );
    assert!(trials >= 20, "only {trials} trials fit in the budget");
    assert!(rollouts >= 2, "only {rollouts} rollouts were started");
    // The kills hit the rollout mid-phase, every phase, and the controller got work done
    // between them (not only killed while starting up).
    assert!(
        wanted.is_subset(&kill_phases),
        "kills landed only in {kill_phases:?}"
    );
    assert!(
        productive >= 1 && productive * 4 >= trials as usize,
        "child writes between only {productive} of {trials} pairs of kills"
    );
    for zone in ["zone-a", "zone-b", "zone-c"] {
        let cluster = env
            .child_value(
                shared::names::ChildKind::VMCluster,
                &format!("crash-{zone}"),
            )
            .await?;
        assert_eq!(
            cluster.pointer("/spec/clusterVersion"),
            Some(&json!(format!("v1.{version}.0-cluster")))
        );
    }
    drop(controller);
    Ok(())
}
