//! How many CPUs this process may use, the default of `--worker-threads`: the smaller of the
//! cgroup v2 CPU quota (`cpu.max` of the process's cgroup and of every ancestor it can see) and
//! the scheduler affinity (`std::thread::available_parallelism`), at least 1.
//!
//! More workers than usable CPUs only preempt each other: on one core, two workers tripled the
//! webhook's p99 (BENCHMARKS.md). A Kubernetes CPU limit becomes the container's `cpu.max`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// Where the cgroup v2 hierarchy is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The CPUs this process may use, at least 1.
#[must_use]
pub fn available() -> usize {
    let affinity = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let quota = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| cgroup_path(&text).map(str::to_owned))
        .and_then(|path| quota_of(Path::new(CGROUP_ROOT), &path));
    quota.map_or(affinity, |quota| quota.min(affinity)).max(1)
}

/// The smallest quota (in whole CPUs) of the cgroup at `path` below `root` and of its ancestors.
fn quota_of(root: &Path, path: &str) -> Option<usize> {
    let mut dir: PathBuf = root.join(path.trim_start_matches('/'));
    let mut smallest: Option<usize> = None;
    loop {
        if let Some(cpus) = std::fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .and_then(|text| cpus_of_cpu_max(&text))
        {
            smallest = Some(smallest.map_or(cpus, |s| s.min(cpus)));
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return smallest;
        }
    }
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` (the `0::<path>` line); `None`
/// on a cgroup v1 only system.
#[must_use]
pub fn cgroup_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim)
        .filter(|path| path.starts_with('/'))
}

/// Whole CPUs allowed by a `cpu.max` file (`"<quota> <period>"` in microseconds, or `"max
/// <period>"` for no limit): the quota divided by the period, rounded down (a fraction of a
/// CPU more is not room for one more busy thread), at least 1. `None` when unlimited or
/// unreadable.
#[must_use]
pub fn cpus_of_cpu_max(text: &str) -> Option<usize> {
    let mut fields = text.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    let period: u64 = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota == 0 || period == 0 {
        return None;
    }
    usize::try_from(quota / period).ok().map(|cpus| cpus.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_quota_over_period_rounded_down_at_least_one() {
        assert_eq!(cpus_of_cpu_max("max 100000\n"), None);
        assert_eq!(cpus_of_cpu_max("100000 100000\n"), Some(1));
        assert_eq!(cpus_of_cpu_max("200000 100000"), Some(2));
        assert_eq!(cpus_of_cpu_max("150000 100000"), Some(1));
        assert_eq!(cpus_of_cpu_max("50000 100000"), Some(1));
        assert_eq!(cpus_of_cpu_max("400000 50000"), Some(8));
        // The period may be omitted (the kernel's default is 100ms).
        assert_eq!(cpus_of_cpu_max("300000"), Some(3));
        assert_eq!(cpus_of_cpu_max(""), None);
        assert_eq!(cpus_of_cpu_max("lots 100000"), None);
        assert_eq!(cpus_of_cpu_max("100000 0"), None);
    }

    #[test]
    fn cgroup_v2_path_from_proc_self_cgroup() {
        assert_eq!(cgroup_path("0::/\n"), Some("/"));
        assert_eq!(
            cgroup_path("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope\n"),
            Some("/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope")
        );
        // Hybrid hierarchy: the v2 line is found among the v1 lines.
        assert_eq!(
            cgroup_path("4:memory:/x\n1:cpu:/\n0::/user.slice\n"),
            Some("/user.slice")
        );
        // cgroup v1 only.
        assert_eq!(cgroup_path("4:memory:/x\n1:cpu,cpuacct:/\n"), None);
    }

    #[test]
    fn the_smallest_quota_of_the_cgroup_and_its_ancestors_counts() {
        let root = tempfile::tempdir().expect("temporary directory");
        let pod = root.path().join("kubepods/pod1");
        let container = pod.join("c1");
        std::fs::create_dir_all(&container).expect("directories");
        std::fs::write(root.path().join("cpu.max"), "max 100000\n").expect("write");
        std::fs::write(pod.join("cpu.max"), "200000 100000\n").expect("write");
        std::fs::write(container.join("cpu.max"), "max 100000\n").expect("write");
        assert_eq!(quota_of(root.path(), "/kubepods/pod1/c1"), Some(2));
        std::fs::write(container.join("cpu.max"), "100000 100000\n").expect("write");
        assert_eq!(quota_of(root.path(), "/kubepods/pod1/c1"), Some(1));
        // No limit anywhere, or no cpu.max files at all.
        std::fs::write(pod.join("cpu.max"), "max 100000\n").expect("write");
        std::fs::write(container.join("cpu.max"), "max 100000\n").expect("write");
        assert_eq!(quota_of(root.path(), "/kubepods/pod1/c1"), None);
        assert_eq!(quota_of(root.path(), "/elsewhere"), None);
        assert!(available() >= 1);
    }
}
