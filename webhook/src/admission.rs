//! Admission decisions (docs/api.md "Validation summary"), independent of HTTP: parse an
//! `AdmissionReview`, short-circuit what must never be blocked, then default (mutate) or validate
//! through the domain crate.

use kube::core::admission::{AdmissionResponse, META_API_VERSION_V1, META_KIND, Operation};
use kube::core::{GroupVersionKind, Status};
use serde::Deserialize;
use serde_json::Value;
use shared::VMDistributed;
use shared::api::{GROUP, KIND, VERSION};

/// Largest request body accepted; larger ones get HTTP 413 without being read whole.
///
/// The limit docs/operations.md documents (8 MiB). The largest legitimate review fits well under
/// it: etcd stores objects of at most 1.5 MiB, so an UPDATE's `object` and `oldObject` together are
/// about 3 MiB at most (a CREATE half that), plus the review's envelope, and the API server caps
/// request bodies it accepts at 3 MiB. Anything bigger describes an object Kubernetes could not
/// store, and buffering it would only cost memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A body that is not a review this webhook answers: HTTP 400 with this one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// The parts of an `AdmissionReview` body this webhook reads. The objects are decoded straight
/// into JSON values: kube's `AdmissionReview<DynamicObject>` buffers each object once more
/// (its flattened `data`) and then needs a re-encoding to a `Value`, which was most of the
/// per-request CPU. Fields not named here (userInfo, resource, options, ...) are skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewBody {
    api_version: String,
    kind: String,
    request: Option<RequestBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    uid: String,
    kind: GroupVersionKind,
    operation: Operation,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
}

/// A parsed review of a `VMDistributed` create or update that needs a decision.
#[derive(Debug)]
pub struct Review {
    /// `request.uid`, echoed in the response and logged.
    pub uid: String,
    /// `request.namespace`: where the object is created (it may be absent from the object).
    pub namespace: Option<String>,
    /// `request.object`.
    pub object: Value,
    /// `request.oldObject` (UPDATE).
    pub old_object: Option<Value>,
}

impl Review {
    /// An allowed response to this review, to be denied, patched or warned.
    #[must_use]
    pub fn response(&self) -> AdmissionResponse {
        allowed(&self.uid)
    }
}

/// An allowed response carrying `uid`. kube only builds responses from its own request type,
/// so this starts from its `invalid` constructor (which sets the review's apiVersion and
/// kind) and turns it into the neutral allowed response `From<&AdmissionRequest>` gives.
fn allowed(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    uid.clone_into(&mut response.uid);
    response.allowed = true;
    response.result = Status::default();
    response
}

/// The first step of every review.
#[derive(Debug)]
pub enum Prepared {
    /// Answered without looking at the spec (allowed as is); the reason is for the log.
    Bypass {
        /// The response to send.
        response: Box<AdmissionResponse>,
        /// Why no decision was needed.
        why: &'static str,
    },
    /// A create or update to default or validate.
    Review(Box<Review>),
}

/// Parse a request body and decide whether the spec needs to be looked at.
///
/// Bypassed (allowed, no patch, no validation): operations other than CREATE and UPDATE,
/// subresources, objects being deleted (`deletionTimestamp`), and updates whose `spec` equals
/// the old object's — metadata and finalizer changes must never be blocked, or a stored object
/// that today's rules reject could never be deleted.
///
/// # Errors
/// [`BadRequest`] for malformed JSON, an AdmissionReview other than `admission.k8s.io/v1`, a
/// missing request or object, or a kind other than `VMDistributed`.
pub fn prepare(body: &[u8]) -> Result<Prepared, BadRequest> {
    let review: ReviewBody = serde_json::from_slice(body).map_err(|err| {
        BadRequest(format!(
            "malformed AdmissionReview: {}",
            one_line(&err.to_string())
        ))
    })?;
    if review.api_version != META_API_VERSION_V1 || review.kind != META_KIND {
        return Err(BadRequest(format!(
            "unsupported review type {}/{}: only {META_API_VERSION_V1} {META_KIND} is served",
            one_line(&review.api_version),
            one_line(&review.kind)
        )));
    }
    let Some(request) = review.request else {
        return Err(BadRequest("AdmissionReview has no request".to_owned()));
    };
    let kind = &request.kind;
    if kind.group != GROUP || kind.kind != KIND || kind.version != VERSION {
        return Err(BadRequest(format!(
            "unsupported kind {}/{}, Kind={}: this webhook serves {GROUP}/{VERSION}, Kind={KIND}",
            one_line(&kind.group),
            one_line(&kind.version),
            one_line(&kind.kind)
        )));
    }
    let bypass = |why| {
        Ok(Prepared::Bypass {
            response: Box::new(allowed(&request.uid)),
            why,
        })
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return bypass("operation is neither CREATE nor UPDATE");
    }
    if request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return bypass("subresource request");
    }
    let Some(object) = request.object.as_ref().filter(|o| !o.is_null()) else {
        return Err(BadRequest(format!(
            "request.object is missing in a {:?} review",
            request.operation
        )));
    };
    if !object.is_object() {
        return Err(BadRequest("request.object is not a JSON object".to_owned()));
    }
    if object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return bypass("object is being deleted");
    }
    let old_object = match request.operation {
        Operation::Update => {
            let Some(old) = request.old_object.as_ref().filter(|o| !o.is_null()) else {
                return Err(BadRequest(
                    "request.oldObject is missing in an UPDATE review".to_owned(),
                ));
            };
            if object.get("spec") == old.get("spec") {
                return bypass("spec unchanged");
            }
            request.old_object
        }
        _ => None,
    };
    Ok(Prepared::Review(Box::new(Review {
        uid: request.uid,
        namespace: request.namespace,
        object: request.object.unwrap_or_default(),
        old_object,
    })))
}

/// Collapse whitespace so a reason stays on one line (HTTP bodies and log lines).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decode the object strictly; the error names the field path of every problem.
fn decode(object: &Value) -> Result<VMDistributed, String> {
    shared::parse::strict_cr(object).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The mutating decision: allowed with the minimal JSON Patch from the object to its defaulted
/// form (no patch when nothing is missing). An object that does not decode cannot be defaulted
/// and is denied with the field path, as validation would.
#[must_use]
pub fn mutate(review: &Review) -> AdmissionResponse {
    let response = review.response();
    let cr = match decode(&review.object) {
        Ok(cr) => cr,
        Err(message) => return response.deny(message),
    };
    let defaulted = shared::defaults::apply_defaults(&cr);
    if defaulted.spec == cr.spec {
        return response;
    }
    let spec = match serde_json::to_value(&defaulted.spec) {
        Ok(spec) => spec,
        Err(err) => return response.deny(format!("spec cannot be encoded: {err}")),
    };
    let mut target = review.object.clone();
    if let Some(map) = target.as_object_mut() {
        map.insert("spec".to_owned(), spec);
    }
    let patch = json_patch::diff(&review.object, &target);
    if patch.0.is_empty() {
        return response;
    }
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        Err(err) => response.deny(format!("patch cannot be encoded: {err}")),
    }
}

/// The validating decision: every error at once, with field paths, in one message; warnings
/// are returned either way.
#[must_use]
pub fn validate(review: &Review) -> AdmissionResponse {
    let mut response = review.response();
    let report = shared::validation::validate_value(&review.object, review.old_object.as_ref());
    if !report.errors.is_empty() {
        response = response.deny(one_line(&report.error_summary()));
    }
    if !report.warnings.is_empty() {
        response.warnings = Some(report.warnings);
    }
    response
}

/// Serialize the response into an `AdmissionReview` body.
///
/// # Errors
/// A serialization error (not expected for these types).
pub fn encode(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&response.into_review())
}
