//! The cached helm binary works and renders charts.

use anyhow::Result;
use harness::ControlPlane;

#[tokio::test]
async fn helm_version_runs_from_the_cache() -> Result<()> {
    let helm = harness::tool_path("helm")?;
    assert!(helm.starts_with(harness::envtest_bin_dir()?));
    let cp = ControlPlane::shared().await?;
    let output = cp.helm()?.args(["version", "--short"]).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "helm version failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("v3.22.0"),
        "unexpected helm version: {stdout}"
    );
    Ok(())
}

#[tokio::test]
async fn helm_template_renders_a_tiny_chart() -> Result<()> {
    let chart = tempfile::tempdir()?;
    std::fs::create_dir(chart.path().join("templates"))?;
    std::fs::write(
        chart.path().join("Chart.yaml"),
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    )?;
    std::fs::write(chart.path().join("values.yaml"), "greeting: hello\n")?;
    std::fs::write(
        chart.path().join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
    )?;
    let cp = ControlPlane::shared().await?;
    let output = cp
        .helm()?
        .args([
            "template",
            "rel",
            &chart.path().display().to_string(),
            "--set",
            "greeting=hi",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs = harness::parse_yaml_documents(&stdout)?;
    assert_eq!(docs.len(), 1, "{stdout}");
    assert_eq!(docs[0]["metadata"]["name"], "rel-cm");
    assert_eq!(docs[0]["data"]["greeting"], "hi");
    Ok(())
}
