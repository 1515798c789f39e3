//! Where the binaries find their cluster: the `--kubeconfig` file when given, otherwise the
//! in-cluster service account, `KUBECONFIG` or `~/.kube/config`. Each error names the flag or the
//! places that were tried.

use std::path::Path;

/// The client configuration from `kubeconfig`, or inferred when it is `None`.
///
/// # Errors
/// The file cannot be read or used, or no configuration can be inferred.
pub async fn load(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|err| anyhow::anyhow!("--kubeconfig {}: {err}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|err| anyhow::anyhow!("--kubeconfig {}: {err}", path.display()))
        }
        None => kube::Config::infer().await.map_err(|err| {
            anyhow::anyhow!(
                "no cluster configuration (in-cluster, KUBECONFIG or ~/.kube/config): {err}"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_kubeconfig_is_an_error_naming_the_flag_and_the_file() {
        let err = load(Some(Path::new("/nonexistent/kubeconfig")))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("--kubeconfig /nonexistent/kubeconfig:"),
            "{message}"
        );
    }
}
