//! Where things are: the workspace, the cached envtest tools, and binaries built by cargo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, anyhow, bail};

/// Root of the cargo workspace (the repository checkout).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The generated project CRD in the chart ([`shared::crd::CRD_PATH`]).
pub fn project_crd_path() -> PathBuf {
    workspace_root().join(shared::crd::CRD_PATH)
}

/// Directory with kube-apiserver, etcd, kube-controller-manager and helm.
///
/// `VMD_ENVTEST_BIN` points at a ready directory and skips the build; otherwise
/// `tests/envtest/build.sh` runs once per test binary (it returns at once when the versioned cache
/// under `${VMD_CACHE_DIR:-~/.cache/vmdistributed}/envtest/` is complete, and builds otherwise).
pub fn envtest_bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| locate_envtest_bin().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate_envtest_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VMD_ENVTEST_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = workspace_root().join("tests/envtest/build.sh");
    // stderr is inherited so a first, minutes-long build shows its progress.
    let output = Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}); see its messages above",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().map(str::trim).unwrap_or_default();
    if dir.is_empty() {
        bail!("{} printed no directory", script.display());
    }
    Ok(PathBuf::from(dir))
}

/// Path of a cached envtest tool (`kube-apiserver`, `etcd`, `kube-controller-manager`,
/// `kube-scheduler`, `helm`, `kwok`, `vm-operator`) or of `vm-operator-crd.yaml`.
pub fn tool_path(name: &str) -> Result<PathBuf> {
    let path = envtest_bin_dir()?.join(name);
    if !path.is_file() {
        bail!("{} is missing; run tests/envtest/build.sh", path.display());
    }
    Ok(path)
}

/// `target/<profile>` of the running test binary (it lives in `target/<profile>/deps/`).
pub fn target_profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("test binary has no parent directory"))?;
    Ok(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    }
    .to_path_buf())
}

/// Builds `bin` of workspace package `package` with cargo (once per test binary, serialized across
/// test binaries with a file lock) and returns `target/<profile>/<bin>`.
///
/// Integration tests cannot use `CARGO_BIN_EXE_*` of other packages, hence this.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().map_err(|_| anyhow!("binary cache poisoned"))?;
    let key = format!("{package}/{bin}");
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(&key) {
        return Ok(path.clone());
    }
    let profile_dir = target_profile_dir()?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("no target dir above {}", profile_dir.display()))?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let lock_path = target_dir.join(".harness-cargo-build.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().context("locking the cargo build lock")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--target-dir",
        ])
        .arg(target_dir);
    if release {
        cmd.arg("--release");
    }
    let output = cmd.output().context("running cargo build")?;
    drop(lock);
    if !output.status.success() {
        bail!(
            "cargo build -p {package} --bin {bin} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = profile_dir.join(bin);
    if !path.is_file() {
        bail!("cargo built {bin} but {} does not exist", path.display());
    }
    built
        .get_or_insert_with(HashMap::new)
        .insert(key, path.clone());
    Ok(path)
}

/// `vmdistributed-webhook`, freshly built by cargo.
pub fn webhook_binary() -> Result<PathBuf> {
    workspace_binary("vmdistributed-webhook", "vmdistributed-webhook")
}

/// `vmdistributed-controller`, freshly built by cargo.
pub fn controller_binary() -> Result<PathBuf> {
    workspace_binary("vmdistributed-controller", "vmdistributed-controller")
}

/// A binary of this (tests) package. Cargo builds them before running this package's integration
/// tests, so the existing file is used; otherwise (library used from elsewhere) cargo builds it.
pub fn tests_binary(bin: &str) -> Result<PathBuf> {
    let path = target_profile_dir()?.join(bin);
    if path.is_file() {
        return Ok(path);
    }
    workspace_binary("vmdistributed-tests", bin)
}

/// The simulated VictoriaMetrics operator (`vm-operator-sim`).
pub fn sim_operator_binary() -> Result<PathBuf> {
    tests_binary("vm-operator-sim")
}
