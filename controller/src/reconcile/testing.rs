//! A [`Context`] for unit tests, over a stand-in API server that records every request and
//! answers each with an empty object: what the reconcile sends can be counted without a
//! cluster.

use std::sync::{Arc, Mutex};

use shared::VMDistributed;

use super::context::{Context, EventSink};
use crate::cache::watches::watch_all;
use crate::leader::LeaderGate;
use crate::metrics::Metrics;
use crate::writer::Writer;

/// The requests a stand-in API server received, as `METHOD path`.
pub(super) type Requests = Arc<Mutex<Vec<String>>>;

/// A context whose writes and events go to a stand-in API server, acting while `gate` allows.
pub(super) fn context(gate: Arc<LeaderGate>) -> (Context, Requests) {
    let seen: Requests = Arc::default();
    let requests = Arc::clone(&seen);
    let api_server = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        requests.lock().expect("requests").push(format!(
            "{} {}",
            request.method(),
            request.uri().path()
        ));
        async move {
            let response = http::Response::builder()
                .status(201)
                .body(kube::client::Body::from(b"{}".to_vec()))
                .expect("response");
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let client = kube::Client::new(api_server, "default");
    let metrics = Arc::new(Metrics::new());
    let (stores, _) = watch_all(&client, None, &[]);
    let writer = Writer::new(client.clone(), Arc::clone(&gate), Arc::clone(&metrics));
    let events = EventSink {
        client,
        reporter: kube::runtime::events::Reporter {
            controller: "vmdistributed-controller".to_owned(),
            instance: None,
        },
        gate,
    };
    (Context::new(writer, stores, events, metrics), seen)
}

/// A stored `VMDistributed` `ns/name` with this uid.
pub(super) fn cr(name: &str, uid: &str) -> VMDistributed {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": name, "namespace": "ns", "uid": uid},
        "spec": {"zones": []},
    }))
    .expect("VMDistributed")
}
