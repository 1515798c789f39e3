//! The Kubernetes API client: kube's own request layers over a hyper client that speaks HTTP/2
//! when the API server offers it (kube-apiserver always does over TLS, as client-go expects).
//!
//! kube-client 5 builds an HTTP/1.1-only client, where every request in flight holds a TCP and
//! TLS connection of its own, and every one stays in the pool with its buffers for 90 s. A burst
//! of reconciles (a thousand CRs applied at once) then opened dozens of connections, and the
//! allocator kept their peak long after. Over HTTP/2 all watches and requests share one
//! connection, and the API server does one TLS handshake instead of dozens.

use std::time::Duration;

use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// With one shared connection, a peer that vanished without closing it (a node or a load
/// balancer gone) would stall every watch at once; pings find that out, as client-go's
/// `ReadIdleTimeout` and `PingTimeout` do.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Flow-control windows as client-go sets them. A stream's unread data also holds the shared
/// connection window; with hyper's 5 MiB default, a few watches read late would stall every
/// request. The per-stream window still bounds what each stream buffers.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 1 << 30;

/// A client for `config`, with the same authentication, headers, base URI, server name and
/// retries of transient failures (429, 503, 504) as `Client::try_from(config)`.
///
/// # Errors
/// The TLS material or the authentication settings of `config` are unusable, or it names a
/// proxy (not supported, as in the kube client this replaces, built without `http-proxy`).
pub fn build(config: Config) -> anyhow::Result<Client> {
    if let Some(proxy) = &config.proxy_url {
        anyhow::bail!(
            "the configuration names the proxy {proxy}: the controller connects to the API server \
             directly and does not support proxies"
        );
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    // HTTP/2 writes a request's HEADERS and DATA frames separately; with Nagle's algorithm the
    // second waits for the server's delayed ACK, adding up to 200 ms to every apply.
    http.set_nodelay(true);
    let mut https = HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = name.clone().try_into().map_err(|err| {
            kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(err))
        })?;
        https = https.with_server_name_resolver(FixedServerNameResolver::new(name));
    }
    let https = https.enable_all_versions().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::new("https://127.0.0.1:6443".parse().expect("a valid URI"));
        config.default_namespace = "team-a".to_owned();
        config
    }

    #[tokio::test]
    async fn builds_a_client_for_the_configured_server_and_namespace() {
        let client = build(config()).expect("a client");
        assert_eq!(client.default_namespace(), "team-a");
    }

    #[tokio::test]
    async fn a_proxy_is_refused_with_a_message_that_names_it() {
        let mut config = config();
        config.proxy_url = Some("http://proxy.example:3128".parse().expect("a valid URI"));
        let Err(err) = build(config) else {
            panic!("a proxy was accepted")
        };
        let err = err.to_string();
        assert!(err.contains("http://proxy.example:3128/"), "{err}");
        assert!(err.contains("does not support proxies"), "{err}");
    }

    #[tokio::test]
    async fn an_invalid_tls_server_name_is_an_error_not_a_panic() {
        let mut config = config();
        config.tls_server_name = Some("not a name!".to_owned());
        assert!(build(config).is_err());
    }
}
