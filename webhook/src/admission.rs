//! Admission decisions (SPEC §3), independent of HTTP: parse an `AdmissionReview`, short-circuit
//! what must never be blocked, then default (mutate) or validate through the domain crate.

use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use serde_json::Value;
use shared::VMDistributed;
use shared::api::{GROUP, KIND, VERSION};

/// Largest request body accepted; larger ones get HTTP 413 without being read whole.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A body that is not a review this webhook answers: HTTP 400 with this one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A parsed review of a `VMDistributed` create or update that needs a decision.
#[derive(Debug)]
pub struct Review {
    /// The request, for the response's uid and type.
    pub request: AdmissionRequest<DynamicObject>,
    /// `request.object` as JSON.
    pub object: Value,
    /// `request.oldObject` as JSON (UPDATE).
    pub old_object: Option<Value>,
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
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|err| {
        BadRequest(format!(
            "malformed AdmissionReview: {}",
            one_line(&err.to_string())
        ))
    })?;
    if review.types.api_version != META_API_VERSION_V1 || review.types.kind != META_KIND {
        return Err(BadRequest(format!(
            "unsupported review type {}/{}: only {META_API_VERSION_V1} {META_KIND} is served",
            one_line(&review.types.api_version),
            one_line(&review.types.kind)
        )));
    }
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| BadRequest("AdmissionReview has no request".to_owned()))?;
    let kind = &request.kind;
    if kind.group != GROUP || kind.kind != KIND || kind.version != VERSION {
        return Err(BadRequest(format!(
            "unsupported kind {}/{}, Kind={}: this webhook serves {GROUP}/{VERSION}, Kind={KIND}",
            one_line(&kind.group),
            one_line(&kind.version),
            one_line(&kind.kind)
        )));
    }
    let bypass = |request: &AdmissionRequest<DynamicObject>, why| {
        Ok(Prepared::Bypass {
            response: Box::new(AdmissionResponse::from(request)),
            why,
        })
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return bypass(&request, "operation is neither CREATE nor UPDATE");
    }
    if request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return bypass(&request, "subresource request");
    }
    let Some(object) = request.object.as_ref() else {
        return Err(BadRequest(format!(
            "request.object is missing in a {:?} review",
            request.operation
        )));
    };
    if object.metadata.deletion_timestamp.is_some() {
        return bypass(&request, "object is being deleted");
    }
    if request.operation == Operation::Update {
        let Some(old) = request.old_object.as_ref() else {
            return Err(BadRequest(
                "request.oldObject is missing in an UPDATE review".to_owned(),
            ));
        };
        if object.data.get("spec") == old.data.get("spec") {
            return bypass(&request, "spec unchanged");
        }
    }
    let object = to_value(object)?;
    let old_object = match (request.operation.clone(), request.old_object.as_ref()) {
        (Operation::Update, Some(old)) => Some(to_value(old)?),
        _ => None,
    };
    Ok(Prepared::Review(Box::new(Review {
        request,
        object,
        old_object,
    })))
}

fn to_value(object: &DynamicObject) -> Result<Value, BadRequest> {
    serde_json::to_value(object).map_err(|err| {
        BadRequest(format!(
            "object cannot be re-encoded: {}",
            one_line(&err.to_string())
        ))
    })
}

/// Collapse whitespace so a reason stays on one line (HTTP bodies and log lines).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decode the object strictly; the error names the field path.
fn decode(object: &Value) -> Result<VMDistributed, String> {
    shared::parse::strict::<VMDistributed>(object).map_err(|err| err.to_string())
}

/// The mutating decision: allowed with the minimal JSON Patch from the object to its defaulted
/// form (no patch when nothing is missing). An object that does not decode cannot be defaulted
/// and is denied with the field path, as validation would.
#[must_use]
pub fn mutate(review: &Review) -> AdmissionResponse {
    let response = AdmissionResponse::from(&review.request);
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
    let mut response = AdmissionResponse::from(&review.request);
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
