//! The workspace binaries other integration tests run are built by cargo and found.

use std::process::Command;

use anyhow::Result;

#[test]
fn webhook_and_controller_binaries_are_built_and_run() -> Result<()> {
    for path in [harness::webhook_binary()?, harness::controller_binary()?] {
        assert!(
            path.starts_with(harness::paths::target_profile_dir()?),
            "{}",
            path.display()
        );
        let output = Command::new(&path).arg("--help").output()?;
        assert!(
            output.status.success(),
            "{} --help failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        // A second call is answered from the per-process cache: same path, no new build.
        let again = if path.ends_with("vmdistributed-webhook") {
            harness::webhook_binary()?
        } else {
            harness::controller_binary()?
        };
        assert_eq!(again, path);
    }
    let sim = harness::sim_operator_binary()?;
    let output = Command::new(&sim).arg("--help").output()?;
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && help.contains("--ready-delay"),
        "{help}"
    );
    Ok(())
}
