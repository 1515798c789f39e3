//! Writing files the way the kubelet updates a mounted Secret, for tests and local runs.
//!
//! Layout after [`publish`]: `dir/..<version>/<file>` holds the content, `dir/..data` is a symlink
//! to the current version directory, and `dir/<file>` is a symlink to `..data/<file>`. An update
//! writes a new version directory, points a temporary link at it and renames that over `..data`
//! (atomic), then removes the previous version: readers always see a complete set of files.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pem::CertError;

static VERSION: AtomicU64 = AtomicU64::new(0);

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Atomically replace the content of the Secret-style volume at `dir` with `files`
/// (name, content). Creates `dir` and the per-file symlinks on first use.
///
/// # Errors
/// [`CertError::Write`] naming the path that could not be written.
pub fn publish(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let version = format!(
        "..{stamp}_{}_{}",
        std::process::id(),
        VERSION.fetch_add(1, Ordering::Relaxed)
    );
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir).map_err(write_err(&version_dir))?;
    for (name, content) in files {
        let path = version_dir.join(name);
        std::fs::write(&path, content).map_err(write_err(&path))?;
    }

    let data = dir.join("..data");
    let previous: Option<PathBuf> = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&version, &tmp).map_err(write_err(&tmp))?;
    std::fs::rename(&tmp, &data).map_err(write_err(&data))?;

    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).map_err(write_err(&link))?;
        }
    }
    if let Some(previous) = previous
        && previous != Path::new(&version)
    {
        let old = dir.join(previous);
        std::fs::remove_dir_all(&old).map_err(write_err(&old))?;
    }
    Ok(())
}
