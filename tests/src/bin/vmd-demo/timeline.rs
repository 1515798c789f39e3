//! What the demo watches, as plain data: the latest VMDistributed, VMAuth, VMClusters, VMAgents
//! and the VMClusters' pods of the demo namespace, one printed line per visible state change, and
//! the record of every observed write that the invariant checks of the summary run over. No I/O
//! here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use shared::api::VMDistributed;
use shared::names::{ChildKind, child_name, vmauth_name};
use shared::rollout::invariants::{Change, InvariantChecker};

/// Which watch an object came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Distributed,
    Auth,
    Cluster,
    Agent,
    /// A pod the VictoriaMetrics operator made for a VMCluster (its StatefulSets and Deployment).
    Pod,
}

impl Source {
    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            Source::Distributed => "VMDistributed",
            Source::Auth => "VMAuth",
            Source::Cluster => "VMCluster",
            Source::Agent => "VMAgent",
            Source::Pod => "Pod",
        }
    }
}

/// One zone of the demo CR and the names of its children.
#[derive(Clone, Debug)]
pub struct ZoneNames {
    pub zone: String,
    pub cluster: String,
    pub agent: String,
}

/// Names resolved from the applied CR with the same rules the controller uses.
#[derive(Clone, Debug)]
pub struct Layout {
    pub cr: String,
    pub vmauth: String,
    pub zones: Vec<ZoneNames>,
    /// Short names for clusterVersion values, e.g. `("v1.110.0-cluster", "old")`.
    pub version_labels: Vec<(String, String)>,
}

impl Layout {
    pub fn of(cr: &VMDistributed) -> Self {
        Layout {
            cr: cr.metadata.name.clone().unwrap_or_default(),
            vmauth: vmauth_name(cr),
            zones: cr
                .spec
                .zones
                .iter()
                .map(|z| ZoneNames {
                    zone: z.name.clone(),
                    cluster: child_name(cr, z, ChildKind::VMCluster),
                    agent: child_name(cr, z, ChildKind::VMAgent),
                })
                .collect(),
            version_labels: Vec::new(),
        }
    }

    fn zone_of(&self, source: Source, name: &str) -> Option<&str> {
        self.zones
            .iter()
            .find(|z| match source {
                Source::Cluster => z.cluster == name,
                Source::Agent => z.agent == name,
                _ => false,
            })
            .map(|z| z.zone.as_str())
    }
}

/// A write the demo saw, ordered by the object's `resourceVersion`.
///
/// The demo's control plane keeps everything in one etcd, whose revision (the resourceVersion the
/// API server reports) orders writes across all objects; watch streams of different kinds can
/// arrive out of order, so the checks sort by it instead of by arrival time.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A VMDistributed status as written by the controller.
    Cr {
        rv: u64,
        at: Duration,
        rollout_zone: Option<String>,
        phase: Option<String>,
        status: Option<String>,
    },
    /// The live VMAuth target refs, as zones.
    VMAuth {
        rv: u64,
        at: Duration,
        read: BTreeSet<String>,
        write: BTreeSet<String>,
    },
    /// A zone's VMCluster or VMAgent got a new generation (its spec was written).
    ChildSpec {
        rv: u64,
        at: Duration,
        zone: String,
        kind: Source,
        generation: i64,
        version: Option<String>,
    },
}

impl Observation {
    pub fn rv(&self) -> u64 {
        match self {
            Observation::Cr { rv, .. }
            | Observation::VMAuth { rv, .. }
            | Observation::ChildSpec { rv, .. } => *rv,
        }
    }
}

/// The per-zone cluster cell of a line: version and `updateStatus`, and the cluster's pods by
/// the version they run (empty without a real operator making pods).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterCell {
    pub version: Option<String>,
    pub state: Option<String>,
    pub pods: PodCounts,
}

/// A VMCluster's pods: Ready ones per image tag, and those not Ready yet (starting or Pending).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    pub ready: BTreeMap<String, usize>,
    pub not_ready: usize,
}

/// What the demo keeps of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PodState {
    zone: String,
    version: Option<String>,
    ready: bool,
}

/// What one printed line shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub rollout_zone: Option<String>,
    pub phase: Option<String>,
    /// Zones the live VMAuth routes reads / writes to, in spec order.
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub vmauth_exists: bool,
    pub clusters: Vec<ClusterCell>,
    pub status: Option<String>,
    pub ready_zones: Option<String>,
}

/// The latest objects plus everything observed so far.
#[derive(Debug)]
pub struct Model {
    pub layout: Layout,
    pub cr: Option<Value>,
    pub vmauth: Option<Value>,
    pub clusters: BTreeMap<String, Value>,
    pub agents: BTreeMap<String, Value>,
    pods: BTreeMap<String, PodState>,
    pub observations: Vec<Observation>,
    /// Every stored change of the CR and its children, for the shared invariant checker.
    changes: Vec<Change>,
    /// Objects whose resourceVersion was not a number (the ordering checks then refuse to pass).
    pub unordered: usize,
    generations: BTreeMap<(String, String), i64>,
    last_printed: Option<Snapshot>,
}

impl Model {
    pub fn new(layout: Layout) -> Self {
        Model {
            layout,
            cr: None,
            vmauth: None,
            clusters: BTreeMap::new(),
            agents: BTreeMap::new(),
            pods: BTreeMap::new(),
            observations: Vec::new(),
            changes: Vec::new(),
            unordered: 0,
            generations: BTreeMap::new(),
            last_printed: None,
        }
    }

    /// Takes an object from a watch (`deleted` for a Delete event). Objects of other CRs in the
    /// namespace are ignored.
    pub fn apply(&mut self, source: Source, object: Value, deleted: bool, at: Duration) {
        let name = str_at(&object, "/metadata/name").unwrap_or_default();
        let rv = str_at(&object, "/metadata/resourceVersion").and_then(|v| v.parse::<u64>().ok());
        if source != Source::Pod {
            self.changes.push(Change {
                at: rv,
                kind: source.kind().to_owned(),
                name: name.clone(),
                deleted,
                object: object.clone(),
            });
        }
        match source {
            Source::Pod => {
                // The operator labels a VMCluster's pods with the cluster's name and the
                // component; the zone's agent has the same instance name.
                let component = str_at(&object, "/metadata/labels/app.kubernetes.io~1name");
                let is_cluster_pod = matches!(
                    component.as_deref(),
                    Some("vmstorage" | "vmselect" | "vminsert")
                );
                let zone = str_at(&object, "/metadata/labels/app.kubernetes.io~1instance")
                    .filter(|_| is_cluster_pod)
                    .and_then(|instance| {
                        self.layout
                            .zones
                            .iter()
                            .find(|z| z.cluster == instance)
                            .map(|z| z.zone.clone())
                    });
                match zone {
                    Some(zone) if !deleted => {
                        self.pods.insert(name, pod_state(zone, &object));
                    }
                    _ => {
                        self.pods.remove(&name);
                    }
                }
            }
            Source::Distributed => {
                if name != self.layout.cr {
                    return;
                }
                if deleted {
                    self.cr = None;
                    return;
                }
                let observation = Observation::Cr {
                    rv: rv.unwrap_or(0),
                    at,
                    rollout_zone: str_at(&object, "/status/rollout/zone"),
                    phase: str_at(&object, "/status/rollout/phase"),
                    status: str_at(&object, "/status/updateStatus"),
                };
                self.record(rv, observation);
                self.cr = Some(object);
            }
            Source::Auth => {
                if name != self.layout.vmauth {
                    return;
                }
                if deleted {
                    self.vmauth = None;
                    return;
                }
                let (read, write) = self.members(&object);
                let observation = Observation::VMAuth {
                    rv: rv.unwrap_or(0),
                    at,
                    read: read.into_iter().collect(),
                    write: write.into_iter().collect(),
                };
                self.record(rv, observation);
                self.vmauth = Some(object);
            }
            Source::Cluster | Source::Agent => {
                let Some(zone) = self.layout.zone_of(source, &name).map(str::to_owned) else {
                    return;
                };
                let store = if source == Source::Cluster {
                    &mut self.clusters
                } else {
                    &mut self.agents
                };
                if deleted {
                    store.remove(&zone);
                    return;
                }
                let generation = object
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let key = (source.kind().to_string(), zone.clone());
                let previous = self.generations.insert(key, generation);
                store.insert(zone.clone(), object.clone());
                // Only spec writes count: status updates by the operator keep the generation.
                if previous != Some(generation) {
                    let observation = Observation::ChildSpec {
                        rv: rv.unwrap_or(0),
                        at,
                        zone,
                        kind: source,
                        generation,
                        version: str_at(&object, "/spec/clusterVersion"),
                    };
                    self.record(rv, observation);
                }
            }
        }
    }

    fn record(&mut self, rv: Option<u64>, observation: Observation) {
        if rv.is_none() {
            self.unordered += 1;
        }
        self.observations.push(observation);
    }

    /// Zones (spec order) whose children the VMAuth lists in `read` and in `write`.
    fn members(&self, vmauth: &Value) -> (Vec<String>, Vec<String>) {
        let (read_names, write_names) = target_names(vmauth);
        let read = self
            .layout
            .zones
            .iter()
            .filter(|z| read_names.contains(&z.cluster))
            .map(|z| z.zone.clone())
            .collect();
        let write = self
            .layout
            .zones
            .iter()
            .filter(|z| write_names.contains(&z.agent))
            .map(|z| z.zone.clone())
            .collect();
        (read, write)
    }

    /// What a line would show now.
    pub fn snapshot(&self) -> Snapshot {
        let (read, write) = self
            .vmauth
            .as_ref()
            .map(|a| self.members(a))
            .unwrap_or_default();
        let cr = self.cr.as_ref();
        let field = |path: &str| cr.and_then(|c| str_at(c, path));
        Snapshot {
            rollout_zone: field("/status/rollout/zone"),
            phase: field("/status/rollout/phase"),
            read,
            write,
            vmauth_exists: self.vmauth.is_some(),
            clusters: self
                .layout
                .zones
                .iter()
                .map(|z| {
                    let cluster = self.clusters.get(&z.zone);
                    // A status for an older generation says nothing about the current spec.
                    let fresh = cluster.is_some_and(|c| {
                        c.pointer("/status/observedGeneration")
                            .and_then(Value::as_i64)
                            >= c.pointer("/metadata/generation").and_then(Value::as_i64)
                    });
                    ClusterCell {
                        version: cluster.and_then(|c| str_at(c, "/spec/clusterVersion")),
                        state: cluster
                            .filter(|_| fresh)
                            .and_then(|c| str_at(c, "/status/updateStatus")),
                        pods: self.pod_counts(&z.zone),
                    }
                })
                .collect(),
            status: field("/status/updateStatus"),
            ready_zones: field("/status/readyZones"),
        }
    }

    /// The pods of `zone`'s VMCluster, by the version they run.
    pub fn pod_counts(&self, zone: &str) -> PodCounts {
        let mut counts = PodCounts::default();
        for pod in self.pods.values().filter(|p| p.zone == zone) {
            match (&pod.version, pod.ready) {
                (Some(version), true) => *counts.ready.entry(version.clone()).or_default() += 1,
                _ => counts.not_ready += 1,
            }
        }
        counts
    }

    /// The snapshot if it differs from the last one returned (then it counts as printed).
    pub fn changed(&mut self) -> Option<Snapshot> {
        let now = self.snapshot();
        if self.last_printed.as_ref() == Some(&now) {
            return None;
        }
        self.last_printed = Some(now.clone());
        Some(now)
    }

    /// The CR is `operational` for its current generation, every zone's cluster and agent are
    /// `operational` (with `version` when given), and the VMAuth routes every zone.
    pub fn settled(&self, version: Option<&str>) -> bool {
        let Some(cr) = &self.cr else { return false };
        let generation = cr.pointer("/metadata/generation").and_then(Value::as_i64);
        let observed = cr
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64);
        let snapshot = self.snapshot();
        let all = self.layout.zones.len();
        snapshot.status.as_deref() == Some("operational")
            && generation.is_some()
            && observed >= generation
            && snapshot.rollout_zone.is_none()
            && snapshot.read.len() == all
            && snapshot.write.len() == all
            && self.layout.zones.iter().all(|z| {
                let ok = |v: Option<&Value>| {
                    v.is_some_and(|o| {
                        str_at(o, "/status/updateStatus").as_deref() == Some("operational")
                            && o.pointer("/status/observedGeneration")
                                .and_then(Value::as_i64)
                                >= o.pointer("/metadata/generation").and_then(Value::as_i64)
                    })
                };
                ok(self.clusters.get(&z.zone))
                    && ok(self.agents.get(&z.zone))
                    && version.is_none_or(|v| {
                        self.clusters
                            .get(&z.zone)
                            .and_then(|c| str_at(c, "/spec/clusterVersion"))
                            .as_deref()
                            == Some(v)
                    })
            })
    }
}

/// Object names in the VMAuth's read targets (kind `VMCluster/vmselect` or `VMSingle`) and write
/// targets (kind `VMAgent`). Classified by the target kind rather than by the target's `name`:
/// a VMAuth CRD whose schema has no `name` in `defaultTargetRefs` prunes that field on write.
fn target_names(vmauth: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut read = BTreeSet::new();
    let mut write = BTreeSet::new();
    let targets = vmauth
        .pointer("/spec/defaultTargetRefs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for target in targets {
        let names = target
            .pointer("/crd/objects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("name").and_then(Value::as_str))
            .map(str::to_owned);
        match target.pointer("/crd/kind").and_then(Value::as_str) {
            Some("VMAgent") => write.extend(names),
            Some("VMCluster/vmselect" | "VMSingle") => read.extend(names),
            _ => {}
        }
    }
    (read, write)
}

/// A pod's zone, the tag of its first container's image, and its Ready condition.
fn pod_state(zone: String, pod: &Value) -> PodState {
    let version = str_at(pod, "/spec/containers/0/image")
        .and_then(|image| image.rsplit_once(':').map(|(_, tag)| tag.to_owned()));
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    PodState {
        zone,
        version,
        ready,
    }
}

fn str_at(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What the per-zone cells of a line mean, printed once above the first table.
pub fn legend(layout: &Layout) -> Vec<String> {
    let mut lines = vec![
        "per zone: VMAuth membership (R = read target, W = write target, -- = out of the load \
         balancer), clusterVersion, VMCluster state"
            .to_string(),
        "and, with the real operator, the VMCluster's pods: Ready ones by the version they run, \
         + those starting"
            .to_string(),
    ];
    if !layout.version_labels.is_empty() {
        lines.push(format!(
            "versions: {}",
            layout
                .version_labels
                .iter()
                .map(|(version, label)| format!("{label} = {version}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines
}

fn cell_width(layout: &Layout) -> usize {
    let version = layout
        .version_labels
        .iter()
        .map(|(_, label)| label.len())
        .max()
        .unwrap_or(8);
    // "RW " + version + " " + "updating" + " [3 old 2 new +1]"
    (3 + version + 1 + 8 + 2 * (version + 3) + 6)
        .max(layout.zones.iter().map(|z| z.zone.len()).max().unwrap_or(0))
}

/// Column header matching [`format_line`].
pub fn header(layout: &Layout) -> String {
    let width = cell_width(layout);
    let zones = layout
        .zones
        .iter()
        .map(|z| format!("{:<width$}  ", z.zone))
        .collect::<String>();
    format!(
        "{:>8}  {:<8} {:<10} {zones}{}",
        "TIME", "ROLLOUT", "PHASE", "VMDISTRIBUTED"
    )
}

fn state_word(state: Option<&str>) -> &str {
    match state {
        None => "pending",
        Some("operational") => "ready",
        Some("expanding") => "updating",
        Some("failed") => "FAILED",
        Some(other) => other,
    }
}

/// One line: time, rollout zone and phase, then per zone its VMAuth read/write membership, its
/// cluster version and state, and last the VMDistributed status with its ready zones.
pub fn format_line(layout: &Layout, elapsed: Duration, s: &Snapshot) -> String {
    let width = cell_width(layout);
    let cells = layout
        .zones
        .iter()
        .zip(&s.clusters)
        .map(|(zone, cluster)| {
            let flags = if !s.vmauth_exists {
                "  ".to_string()
            } else {
                let r = if s.read.contains(&zone.zone) {
                    'R'
                } else {
                    '-'
                };
                let w = if s.write.contains(&zone.zone) {
                    'W'
                } else {
                    '-'
                };
                format!("{r}{w}")
            };
            let cell = match &cluster.version {
                None if cluster.state.is_none() => format!("{flags} -"),
                version => {
                    let version = version.as_deref().unwrap_or("?");
                    let label = layout
                        .version_labels
                        .iter()
                        .find(|(v, _)| v == version)
                        .map_or(version, |(_, label)| label.as_str());
                    let pods = pods_text(layout, &cluster.pods);
                    format!(
                        "{flags} {label} {}{pods}",
                        state_word(cluster.state.as_deref())
                    )
                }
            };
            format!("{cell:<width$}  ")
        })
        .collect::<String>();
    let status = match (&s.status, &s.ready_zones) {
        (None, _) => "-".to_string(),
        (Some(st), Some(rz)) => format!("{st} {rz}"),
        (Some(st), None) => st.clone(),
    };
    format!(
        "{:>7.1}s  {:<8} {:<10} {cells}{status}",
        elapsed.as_secs_f64(),
        s.rollout_zone.as_deref().unwrap_or("-"),
        s.phase.as_deref().unwrap_or("-"),
    )
}

/// ` [3 old]`, ` [2 old 1 new +1]`: Ready pods by version label, `+N` not Ready yet; empty
/// when there are no pods (the simulator makes none).
pub fn pods_text(layout: &Layout, pods: &PodCounts) -> String {
    if pods.ready.is_empty() && pods.not_ready == 0 {
        return String::new();
    }
    let label = |version: &str| {
        layout
            .version_labels
            .iter()
            .find(|(v, _)| v == version)
            .map_or_else(|| version.to_owned(), |(_, l)| l.clone())
    };
    let mut parts: Vec<String> = pods
        .ready
        .iter()
        .map(|(version, n)| format!("{n} {}", label(version)))
        .collect();
    if pods.not_ready > 0 {
        parts.push(format!("+{}", pods.not_ready));
    }
    format!(" [{}]", parts.join(" "))
}

/// The outcome of the rollout as the summary prints it.
#[derive(Debug)]
pub struct Report {
    /// Zones in the order their VMCluster got the new version.
    pub order: Vec<String>,
    /// Per zone: how long it was out of the VMAuth (first exclusion to return).
    pub out_of_lb: Vec<(String, Duration)>,
    /// Gaps between a zone's return and the next zone's exclusion.
    pub pauses: Vec<Duration>,
    /// `(held, description)` per invariant.
    pub invariants: Vec<(bool, String)>,
}

impl Report {
    pub fn all_held(&self) -> bool {
        self.invariants.iter().all(|(ok, _)| *ok)
    }
}

/// Checks the rollout that began with the CR write at `start_rv` (the clusterVersion change)
/// against the rollout invariants (docs/rollout.md "Invariants"), over every observation sorted by
/// resourceVersion.
pub fn analyze(model: &Model, start_rv: u64, new_version: &str) -> Report {
    let zones: Vec<String> = model.layout.zones.iter().map(|z| z.zone.clone()).collect();
    let mut sorted = model.observations.clone();
    sorted.sort_by_key(Observation::rv);
    let window: Vec<&Observation> = sorted.iter().filter(|o| o.rv() > start_rv).collect();
    let mut invariants = Vec::new();

    if model.unordered > 0 {
        invariants.push((
            false,
            format!(
                "{} objects had a non-numeric resourceVersion, so writes could not be ordered",
                model.unordered
            ),
        ));
    }

    // 1. Load balancer: at most one zone out of read or write at any VMAuth state.
    let mut vmauth_states = 0;
    let mut worst: Option<(u64, Vec<String>)> = None;
    for o in &window {
        if let Observation::VMAuth {
            rv, read, write, ..
        } = o
        {
            vmauth_states += 1;
            let out: Vec<String> = zones
                .iter()
                .filter(|z| !read.contains(*z) || !write.contains(*z))
                .cloned()
                .collect();
            if out.len() > 1 && worst.is_none() {
                worst = Some((*rv, out));
            }
        }
    }
    invariants.push(match worst {
        None => (
            true,
            format!(
                "at most one zone out of the VMAuth read/write targets at any moment \
                 ({vmauth_states} VMAuth states checked)"
            ),
        ),
        Some((rv, out)) => (
            false,
            format!(
                "VMAuth at resourceVersion {rv} had {} zones out of the load balancer: {}",
                out.len(),
                out.join(", ")
            ),
        ),
    });

    // 2. Children were written only while their zone was excluded and in phase Applying.
    let mut last_auth: Option<&Observation> = sorted
        .iter()
        .rfind(|o| o.rv() <= start_rv && matches!(o, Observation::VMAuth { .. }));
    let mut last_cr: Option<&Observation> = None;
    let mut child_writes = 0;
    let mut violations = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let mut first_write_rv: BTreeMap<String, u64> = BTreeMap::new();
    for o in &window {
        match o {
            Observation::VMAuth { .. } => last_auth = Some(o),
            Observation::Cr { .. } => last_cr = Some(o),
            Observation::ChildSpec {
                rv,
                zone,
                kind,
                version,
                ..
            } => {
                child_writes += 1;
                let excluded = matches!(last_auth, Some(Observation::VMAuth { read, write, .. })
                    if !read.contains(zone) && !write.contains(zone));
                let applying = matches!(last_cr, Some(Observation::Cr { rollout_zone, phase, .. })
                    if rollout_zone.as_deref() == Some(zone.as_str()) && phase.as_deref() == Some("Applying"));
                if !excluded || !applying {
                    violations.push(format!(
                        "{zone} {} written at resourceVersion {rv} while {}",
                        kind.kind(),
                        if excluded {
                            "the rollout was not in its Applying phase"
                        } else {
                            "it was still in the load balancer"
                        }
                    ));
                }
                if *kind == Source::Cluster && version.as_deref() == Some(new_version) {
                    first_write_rv.entry(zone.clone()).or_insert_with(|| {
                        order.push(zone.clone());
                        *rv
                    });
                }
            }
        }
    }
    invariants.push(if violations.is_empty() {
        (
            true,
            format!(
                "every child write happened while its zone was out of the load balancer, in phase \
                 Applying ({child_writes} writes checked)"
            ),
        )
    } else {
        (false, violations.join("; "))
    });

    // 3. One zone at a time, in spec order: every zone got the new version, in spec order, and a
    //    zone's change started only after the previous zone was back in the load balancer.
    let mut sequential = Vec::new();
    for pair in order.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let (Some(&prev_rv), Some(&next_rv)) = (first_write_rv.get(prev), first_write_rv.get(next))
        else {
            continue;
        };
        let restored = window.iter().any(|o| {
            matches!(o, Observation::VMAuth { rv, read, write, .. }
                if *rv > prev_rv && *rv < next_rv && read.contains(prev) && write.contains(prev))
        });
        if !restored {
            sequential.push(format!(
                "{next} was changed before {prev} was back in the load balancer"
            ));
        }
    }
    let in_order = order == zones;
    invariants.push(if in_order && sequential.is_empty() {
        (
            true,
            "zones updated one at a time, in spec order, each back in the load balancer before \
             the next started"
                .to_string(),
        )
    } else {
        let mut problems = sequential;
        if !in_order {
            problems.push(format!(
                "update order was [{}], spec order is [{}]",
                order.join(", "),
                zones.join(", ")
            ));
        }
        (false, problems.join("; "))
    });

    // 4. The end state.
    let settled = model.settled(Some(new_version));
    invariants.push((
        settled,
        if settled {
            format!(
                "ended operational: {} zones ready on {new_version} and routed for reads and writes",
                zones.len()
            )
        } else {
            "did not end operational with every zone ready on the new version".to_string()
        },
    ));

    // Durations for the summary (arrival times; informative only).
    let mut out_of_lb = Vec::new();
    let mut back_at: Vec<Duration> = Vec::new();
    let mut out_since: Vec<Duration> = Vec::new();
    for zone in &zones {
        let mut since = None;
        let mut back = None;
        for o in &window {
            if let Observation::VMAuth {
                read, write, at, ..
            } = o
            {
                let inside = read.contains(zone) && write.contains(zone);
                if !inside && since.is_none() {
                    since = Some(*at);
                }
                if inside && since.is_some() && back.is_none() {
                    back = Some(*at);
                }
            }
        }
        if let (Some(s), Some(b)) = (since, back) {
            out_of_lb.push((zone.clone(), b.saturating_sub(s)));
            out_since.push(s);
            back_at.push(b);
        }
    }
    let pauses = back_at
        .iter()
        .zip(out_since.iter().skip(1))
        .map(|(b, s)| s.saturating_sub(*b))
        .collect();

    // The checker the tests use. It is fed every change since the demo began watching, so it
    // knows which zones were routed, and judges the states of the rollout like the checks above:
    // while the zones are first created the VictoriaMetrics operator may report several agents
    // `expanding` at once, which no rollout caused.
    let mut changes = model.changes.clone();
    changes.sort_by_key(|c| c.at);
    let shared = InvariantChecker::run(&model.layout.cr, &changes);
    let during: Vec<_> = shared
        .violations
        .iter()
        .filter(|v| v.at.is_none_or(|at| at > start_rv))
        .collect();
    invariants.push(match during.first() {
        None => (
            true,
            "the shared invariant checker (shared::rollout::invariants) found nothing in the \
                 rollout's states: no target left without a serving zone"
                .to_owned(),
        ),
        Some(first) => (
            false,
            format!(
                "the shared invariant checker found {} violation(s), first: {first}",
                during.len()
            ),
        ),
    });

    Report {
        order,
        out_of_lb,
        pauses,
        invariants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout() -> Layout {
        let cr: VMDistributed = serde_json::from_value(json!({
            "apiVersion": "operator.victoriametrics.com/v1alpha1",
            "kind": "VMDistributed",
            "metadata": {"name": "demo", "namespace": "demo"},
            "spec": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]}
        }))
        .expect("valid CR");
        Layout::of(&cr)
    }

    fn cr(
        rv: u64,
        generation: i64,
        zone: Option<&str>,
        phase: Option<&str>,
        status: &str,
    ) -> Value {
        json!({
            "apiVersion": "operator.victoriametrics.com/v1alpha1",
            "kind": "VMDistributed",
            "metadata": {"name": "demo", "namespace": "demo", "resourceVersion": rv.to_string(), "generation": generation},
            "spec": {"zones": [{"name": "zone-a"}, {"name": "zone-b"}]},
            "status": {"updateStatus": status, "observedGeneration": generation, "readyZones": "2/2",
                       "rollout": {"zone": zone, "phase": phase}}
        })
    }

    fn vmauth(rv: u64, read: &[&str], write: &[&str]) -> Value {
        let objects = |names: &[&str]| -> Vec<Value> {
            names
                .iter()
                .map(|n| json!({"name": n, "namespace": "demo"}))
                .collect()
        };
        json!({
            "metadata": {"name": "demo", "resourceVersion": rv.to_string(), "generation": 1},
            "spec": {"defaultTargetRefs": [
                {"crd": {"kind": "VMAgent", "objects": objects(write)}},
                {"crd": {"kind": "VMCluster/vmselect", "objects": objects(read)}}
            ]}
        })
    }

    fn cluster(rv: u64, zone: &str, generation: i64, version: &str) -> Value {
        json!({
            "metadata": {"name": format!("demo-{zone}"), "resourceVersion": rv.to_string(), "generation": generation},
            "spec": {"clusterVersion": version},
            "status": {"updateStatus": "operational", "observedGeneration": generation}
        })
    }

    fn agent(rv: u64, zone: &str) -> Value {
        json!({
            "metadata": {"name": format!("demo-{zone}"), "resourceVersion": rv.to_string(), "generation": 1},
            "spec": {},
            "status": {"updateStatus": "operational", "observedGeneration": 1}
        })
    }

    const T: Duration = Duration::ZERO;

    fn pod(name: &str, component: &str, instance: &str, tag: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": name, "labels": {
                "app.kubernetes.io/name": component, "app.kubernetes.io/instance": instance}},
            "spec": {"containers": [{"name": component, "image": format!("victoriametrics/{component}:{tag}")}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        })
    }

    #[test]
    fn cluster_pods_are_counted_by_version_and_readiness_without_the_agent() {
        let mut layout = layout();
        layout.version_labels = vec![
            ("v1.110.0-cluster".into(), "old".into()),
            ("v1.111.0-cluster".into(), "new".into()),
        ];
        let mut model = Model::new(layout);
        let old = "v1.110.0-cluster";
        let new = "v1.111.0-cluster";
        model.apply(
            Source::Pod,
            pod("s-0", "vmstorage", "demo-zone-a", old, true),
            false,
            T,
        );
        model.apply(
            Source::Pod,
            pod("sel-0", "vmselect", "demo-zone-a", new, true),
            false,
            T,
        );
        model.apply(
            Source::Pod,
            pod("ins-0", "vminsert", "demo-zone-a", new, false),
            false,
            T,
        );
        // The agent shares the instance name; another CR's pod is not ours.
        model.apply(
            Source::Pod,
            pod("ag-0", "vmagent", "demo-zone-a", "v1.148.0", true),
            false,
            T,
        );
        model.apply(
            Source::Pod,
            pod("x-0", "vmstorage", "other", old, true),
            false,
            T,
        );
        let counts = model.pod_counts("zone-a");
        assert_eq!(
            counts.ready,
            BTreeMap::from([(old.to_owned(), 1), (new.to_owned(), 1)])
        );
        assert_eq!(counts.not_ready, 1);
        assert_eq!(pods_text(&model.layout, &counts), " [1 old 1 new +1]");
        assert!(
            model
                .changed()
                .is_some_and(|s| s.clusters[0].pods == counts)
        );

        model.apply(
            Source::Pod,
            pod("s-0", "vmstorage", "demo-zone-a", old, true),
            true,
            T,
        );
        assert_eq!(model.pod_counts("zone-a").ready.get(old), None);
        assert_eq!(pods_text(&model.layout, &model.pod_counts("zone-b")), "");
    }

    /// The steady state before the change, then a correct two-zone rollout. Events of different
    /// kinds are fed out of resourceVersion order on purpose.
    fn good_rollout() -> Model {
        let mut m = Model::new(layout());
        let both = ["demo-zone-a", "demo-zone-b"];
        m.apply(Source::Cluster, cluster(2, "zone-a", 1, "v1"), false, T);
        m.apply(Source::Cluster, cluster(3, "zone-b", 1, "v1"), false, T);
        m.apply(Source::Agent, agent(4, "zone-a"), false, T);
        m.apply(Source::Agent, agent(5, "zone-b"), false, T);
        m.apply(Source::Auth, vmauth(6, &both, &both), false, T);
        m.apply(
            Source::Distributed,
            cr(7, 1, None, None, "operational"),
            false,
            T,
        );
        // change at rv 10
        m.apply(
            Source::Distributed,
            cr(11, 2, Some("zone-a"), Some("Excluding"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Auth,
            vmauth(12, &["demo-zone-b"], &["demo-zone-b"]),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(14, "zone-a", 2, "v2"), false, T); // arrives early
        m.apply(
            Source::Distributed,
            cr(13, 2, Some("zone-a"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Distributed,
            cr(15, 2, Some("zone-a"), Some("Restoring"), "expanding"),
            false,
            T,
        );
        m.apply(Source::Auth, vmauth(16, &both, &both), false, T);
        m.apply(
            Source::Distributed,
            cr(17, 2, Some("zone-b"), Some("Excluding"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Auth,
            vmauth(18, &["demo-zone-a"], &["demo-zone-a"]),
            false,
            T,
        );
        m.apply(
            Source::Distributed,
            cr(19, 2, Some("zone-b"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(20, "zone-b", 2, "v2"), false, T);
        m.apply(
            Source::Distributed,
            cr(21, 2, Some("zone-b"), Some("Restoring"), "expanding"),
            false,
            T,
        );
        m.apply(Source::Auth, vmauth(22, &both, &both), false, T);
        m.apply(
            Source::Distributed,
            cr(23, 2, None, None, "operational"),
            false,
            T,
        );
        m
    }

    #[test]
    fn a_correct_rollout_holds_every_invariant() {
        let m = good_rollout();
        let report = analyze(&m, 10, "v2");
        assert!(report.all_held(), "{:?}", report.invariants);
        assert_eq!(report.order, ["zone-a", "zone-b"]);
        assert_eq!(report.out_of_lb.len(), 2);
    }

    #[test]
    fn two_zones_out_at_once_is_reported() {
        let mut m = good_rollout();
        m.apply(Source::Auth, vmauth(24, &[], &["demo-zone-a"]), false, T);
        let report = analyze(&m, 10, "v2");
        assert!(!report.invariants[0].0, "{:?}", report.invariants);
        assert!(report.invariants[0].1.contains("2 zones out"));
        // The shared checker sees it too: `read` lost its last serving zone.
        let shared = report.invariants.last().expect("the shared checker's line");
        assert!(
            !shared.0 && shared.1.contains("shared invariant checker"),
            "{shared:?}"
        );
    }

    #[test]
    fn a_child_written_while_routed_is_reported() {
        let mut m = Model::new(layout());
        let both = ["demo-zone-a", "demo-zone-b"];
        m.apply(Source::Cluster, cluster(2, "zone-a", 1, "v1"), false, T);
        m.apply(Source::Auth, vmauth(6, &both, &both), false, T);
        m.apply(
            Source::Distributed,
            cr(11, 2, Some("zone-a"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(12, "zone-a", 2, "v2"), false, T);
        let report = analyze(&m, 10, "v2");
        assert!(!report.invariants[1].0);
        assert!(
            report.invariants[1]
                .1
                .contains("still in the load balancer")
        );
    }

    #[test]
    fn a_child_written_outside_applying_is_reported() {
        let mut m = Model::new(layout());
        m.apply(Source::Cluster, cluster(2, "zone-a", 1, "v1"), false, T);
        m.apply(
            Source::Distributed,
            cr(11, 2, Some("zone-a"), Some("Excluding"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Auth,
            vmauth(12, &["demo-zone-b"], &["demo-zone-b"]),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(13, "zone-a", 2, "v2"), false, T);
        let report = analyze(&m, 10, "v2");
        assert!(!report.invariants[1].0);
        assert!(report.invariants[1].1.contains("not in its Applying phase"));
    }

    #[test]
    fn wrong_order_is_reported() {
        let mut m = Model::new(layout());
        m.apply(
            Source::Distributed,
            cr(11, 2, Some("zone-b"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Auth,
            vmauth(12, &["demo-zone-a"], &["demo-zone-a"]),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(13, "zone-b", 2, "v2"), false, T);
        m.apply(
            Source::Auth,
            vmauth(
                14,
                &["demo-zone-a", "demo-zone-b"],
                &["demo-zone-a", "demo-zone-b"],
            ),
            false,
            T,
        );
        m.apply(
            Source::Distributed,
            cr(15, 2, Some("zone-a"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Auth,
            vmauth(16, &["demo-zone-b"], &["demo-zone-b"]),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(17, "zone-a", 2, "v2"), false, T);
        let report = analyze(&m, 10, "v2");
        assert_eq!(report.order, ["zone-b", "zone-a"]);
        assert!(!report.invariants[2].0);
        assert!(report.invariants[2].1.contains("spec order"));
    }

    #[test]
    fn overlapping_zones_are_reported() {
        let mut m = Model::new(layout());
        m.apply(
            Source::Distributed,
            cr(11, 2, Some("zone-a"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(
            Source::Auth,
            vmauth(12, &["demo-zone-b"], &["demo-zone-b"]),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(13, "zone-a", 2, "v2"), false, T);
        m.apply(Source::Auth, vmauth(14, &[], &[]), false, T);
        m.apply(
            Source::Distributed,
            cr(15, 2, Some("zone-b"), Some("Applying"), "expanding"),
            false,
            T,
        );
        m.apply(Source::Cluster, cluster(16, "zone-b", 2, "v2"), false, T);
        let report = analyze(&m, 10, "v2");
        assert!(!report.invariants[2].0);
        assert!(report.invariants[2].1.contains("before zone-a was back"));
    }

    #[test]
    fn non_numeric_resource_versions_never_pass() {
        let mut m = good_rollout();
        let mut odd = cr(0, 2, None, None, "operational");
        odd["metadata"]["resourceVersion"] = json!("abc");
        m.apply(Source::Distributed, odd, false, T);
        assert!(!analyze(&m, 10, "v2").all_held());
    }

    #[test]
    fn lines_change_only_with_the_visible_state() {
        let mut m = Model::new(layout());
        m.apply(Source::Cluster, cluster(2, "zone-a", 1, "v1"), false, T);
        assert!(m.changed().is_some());
        // Same visible state, new resourceVersion: no new line.
        m.apply(Source::Cluster, cluster(3, "zone-a", 1, "v1"), false, T);
        assert!(m.changed().is_none());
        m.apply(Source::Auth, vmauth(4, &["demo-zone-b"], &[]), false, T);
        let s = m.changed().expect("a new line");
        assert_eq!(s.read, ["zone-b"]);
        let line = format_line(&m.layout, Duration::from_millis(1500), &s);
        assert!(line.contains("-- v1 ready"), "{line}");
        assert!(line.contains("R- -"), "{line}");
        assert!(line.trim_start().starts_with("1.5s"), "{line}");
    }

    #[test]
    fn objects_of_other_crs_are_ignored() {
        let mut m = Model::new(layout());
        let mut other = cr(5, 1, None, None, "operational");
        other["metadata"]["name"] = json!("other");
        m.apply(Source::Distributed, other, false, T);
        assert!(m.cr.is_none());
        assert!(m.observations.is_empty());
    }
}
