//! Stopping on the signals a pod gets: SIGTERM from the kubelet, SIGINT from a terminal.

/// Resolves at the first SIGTERM or SIGINT, and logs which. Without a SIGTERM handler (it could
/// not be installed, logged) only SIGINT ends it.
pub async fn terminated() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
