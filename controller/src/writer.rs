//! Every request the controller sends that changes something, in one place: each checks the
//! leader gate just before it goes out, uses the field manager [`FIELD_MANAGER`], and is
//! counted in `vmdistributed_child_writes_total`.

use std::sync::Arc;

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};
use shared::names::ChildKind;
use shared::{VMDistributed, VMDistributedStatus};

use crate::error::{Error, is_status};
use crate::leader::LeaderGate;
use crate::managed_fields::{self, Takeover};
use crate::metrics::Metrics;

/// Field manager of every write and finalizer on `VMDistributed`: the names the pure decision
/// (and its invariants) expect, defined once in `shared::model`.
pub use shared::model::{FIELD_MANAGER, FINALIZER};

/// Result of a POST.
#[derive(Debug)]
pub enum Created {
    /// The object was created by us, as the API server stored it.
    New(Box<DynamicObject>),
    /// An object of that name exists: adopt it instead.
    AlreadyExists,
}

/// Sends writes for the current leader.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    gate: Arc<LeaderGate>,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// A writer that refuses to write while `gate` is closed.
    #[must_use]
    pub fn new(client: Client, gate: Arc<LeaderGate>, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            gate,
            metrics,
        }
    }

    /// The client every write goes through, for the requests that change nothing and so
    /// need no leader gate: preflight's dry-runs (`vmdistributed_runtime::dry_run::apply_all`).
    #[must_use]
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn child_api(&self, kind: ChildKind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &vmdistributed_runtime::resources::child(kind),
        )
    }

    fn cr_api(&self, namespace: &str) -> Api<VMDistributed> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn guard(&self, verb: &str) -> Result<(), Error> {
        if self.gate.may_act() {
            self.metrics.wrote(verb);
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Live read of a child; `None` when it does not exist.
    ///
    /// # Errors
    /// API failures other than 404.
    pub async fn get_child(
        &self,
        kind: ChildKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, Error> {
        self.child_api(kind, namespace)
            .get_opt(name)
            .await
            .map_err(|err| Error::api(format!("GET {} {namespace}/{name}", kind.kind()), err))
    }

    /// Live read of a `VMDistributed`; `None` when it is gone.
    ///
    /// # Errors
    /// API failures other than 404.
    pub async fn get_cr(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<VMDistributed>, Error> {
        self.cr_api(namespace)
            .get_opt(name)
            .await
            .map_err(|err| Error::api(format!("GET VMDistributed {namespace}/{name}"), err))
    }

    /// Server-side apply of `object` (a complete object with apiVersion, kind, metadata.name and
    /// the intent's fields only), forcing conflicts. When `live` was written with Update, by
    /// another manager or (as `takeover` allows) by our own creation, the ownership of those
    /// `spec` fields moves to our apply first ([`managed_fields::upgrade`]), guarded by the live
    /// resourceVersion.
    ///
    /// # Errors
    /// Not the leader, conflicts, API failures.
    pub async fn apply_child(
        &self,
        kind: ChildKind,
        namespace: &str,
        object: &Value,
        live: Option<&DynamicObject>,
        takeover: Takeover,
    ) -> Result<DynamicObject, Error> {
        let name = object_name(object)?;
        let api = self.child_api(kind, namespace);
        if let Some(live) = live
            && let Some(fields) = live.metadata.managed_fields.as_ref()
        {
            let fields: Vec<Value> = fields
                .iter()
                .filter_map(|f| serde_json::to_value(f).ok())
                .collect();
            let now = jiff::Timestamp::now().to_string();
            let intent_spec = object.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(upgraded) = managed_fields::upgrade(
                &fields,
                &intent_spec,
                FIELD_MANAGER,
                takeover,
                ChildKind::API_VERSION,
                &now,
            ) {
                let rv = live.metadata.resource_version.clone().unwrap_or_default();
                let patch = json_patch(json!([
                    {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                    {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
                ]))?;
                self.guard("patch")?;
                tracing::info!(kind = kind.kind(), child = %name, ?takeover, "taking over field ownership of spec fields written with Update");
                api.patch(&name, &patch_params(), &Patch::Json::<()>(patch))
                    .await
                    .map_err(|err| {
                        json_patch_error(
                            format!("upgrade managedFields of {} {name}", kind.kind()),
                            err,
                        )
                    })?;
            }
        }
        self.guard("apply")?;
        let params = PatchParams {
            force: true,
            ..patch_params()
        };
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|err| Error::api(format!("apply {} {namespace}/{name}", kind.kind()), err))
    }

    /// POST a new child. `AlreadyExists` is not an error: the caller adopts the object.
    ///
    /// # Errors
    /// Not the leader, API failures.
    pub async fn create_child(
        &self,
        kind: ChildKind,
        namespace: &str,
        object: &Value,
    ) -> Result<Created, Error> {
        let name = object_name(object)?;
        let data: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|err| Error::Encode(err.to_string()))?;
        self.guard("create")?;
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        match self.child_api(kind, namespace).create(&params, &data).await {
            Ok(created) => Ok(Created::New(Box::new(created))),
            Err(err) if is_status(&err, 409) => Ok(Created::AlreadyExists),
            Err(err) => Err(Error::api(
                format!("create {} {namespace}/{name}", kind.kind()),
                err,
            )),
        }
    }

    /// Delete a child, only if it is still the object with `uid` and, when given, still at
    /// `resource_version`: the version the decision to delete it was made on, so a child
    /// released, claimed by another CR or made a `ref` since is not deleted (409, a conflict to
    /// decide again on). Gone already is success.
    ///
    /// # Errors
    /// Not the leader, conflicts, API failures.
    pub async fn delete_child(
        &self,
        kind: ChildKind,
        namespace: &str,
        name: &str,
        uid: &str,
        resource_version: Option<&str>,
    ) -> Result<(), Error> {
        self.guard("delete")?;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: resource_version.map(str::to_owned),
            }),
            ..DeleteParams::background()
        };
        match self.child_api(kind, namespace).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(err) if is_status(&err, 404) => Ok(()),
            Err(err) => Err(Error::api(
                format!("delete {} {namespace}/{name}", kind.kind()),
                err,
            )),
        }
    }

    /// A JSON Patch of a child (releases, owner-reference removal); the operations carry their
    /// own `test` guards.
    ///
    /// # Errors
    /// Not the leader, a failed `test` (as a conflict), API failures.
    pub async fn patch_child(
        &self,
        kind: ChildKind,
        namespace: &str,
        name: &str,
        operations: Value,
    ) -> Result<(), Error> {
        let patch = json_patch(operations)?;
        self.guard("patch")?;
        match self
            .child_api(kind, namespace)
            .patch(name, &patch_params(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => Err(json_patch_error(
                format!("patch {} {namespace}/{name}", kind.kind()),
                err,
            )),
        }
    }

    /// Replace the status of `cr` (PUT on the status subresource) with `cr`'s resourceVersion as
    /// the precondition: 409 means the decision was made on an old object.
    ///
    /// # Errors
    /// Not the leader, conflicts, API failures.
    pub async fn write_status(
        &self,
        cr: &VMDistributed,
        status: &VMDistributedStatus,
    ) -> Result<VMDistributed, Error> {
        let namespace = cr.metadata.namespace.clone().unwrap_or_default();
        let name = cr.metadata.name.clone().unwrap_or_default();
        let mut updated = cr.clone();
        updated.status = Some(status.clone());
        updated.metadata.managed_fields = None;
        self.guard("status")?;
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        self.cr_api(&namespace)
            .replace_status(&name, &params, &updated)
            .await
            .map_err(|err| Error::api(format!("write status of {namespace}/{name}"), err))
    }

    /// Add or remove our finalizer, guarded by the resourceVersion of `cr`.
    ///
    /// # Errors
    /// Not the leader, conflicts, API failures.
    pub async fn set_finalizer(
        &self,
        cr: &VMDistributed,
        present: bool,
    ) -> Result<VMDistributed, Error> {
        let namespace = cr.metadata.namespace.clone().unwrap_or_default();
        let name = cr.metadata.name.clone().unwrap_or_default();
        let mut finalizers = cr.metadata.finalizers.clone().unwrap_or_default();
        finalizers.retain(|f| f != FINALIZER);
        if present {
            finalizers.push(FINALIZER.to_owned());
        }
        let rv = cr.metadata.resource_version.clone().unwrap_or_default();
        let patch = json_patch(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]))?;
        self.guard("patch")?;
        match self
            .cr_api(&namespace)
            .patch(&name, &patch_params(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(updated) => Ok(updated),
            Err(err) => Err(json_patch_error(
                format!("finalizer of {namespace}/{name}"),
                err,
            )),
        }
    }
}

/// The message of a 422 whose JSON Patch could not be applied to the stored object: a `test`
/// operation failed or a path it names is gone (the API server says no more than this).
const PATCH_NOT_APPLICABLE: &str = "the server rejected our request due to an error in our request";

/// A JSON Patch failure: one that could not be applied to the stored object (every patch sent
/// here is guarded by `test` operations, so the object changed meanwhile) is a conflict, to
/// decide again on a fresh read; a 422 naming invalid fields of the patched object is not,
/// since retrying the same patch can never succeed.
fn json_patch_error(action: String, err: kube::Error) -> Error {
    let not_applicable = matches!(&err, kube::Error::Api(status)
        if status.code == 422
            && status.message == PATCH_NOT_APPLICABLE
            && status.details.as_ref().is_none_or(|d| d.causes.is_empty()));
    if not_applicable {
        return Error::Conflict(format!("{action}: the object changed meanwhile ({err})"));
    }
    Error::api(action, err)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn json_patch(operations: Value) -> Result<json_patch::Patch, Error> {
    serde_json::from_value(operations).map_err(|err| Error::Encode(format!("JSON patch: {err}")))
}

fn object_name(object: &Value) -> Result<String, Error> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::Encode("object without metadata.name".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str, causes: &[(&str, &str)]) -> kube::Error {
        let mut status = kube::core::Status::failure(message, "Invalid");
        status.code = code;
        if !causes.is_empty() {
            status.details = Some(kube::core::response::StatusDetails {
                causes: causes
                    .iter()
                    .map(|(field, message)| kube::core::response::StatusCause {
                        field: (*field).to_owned(),
                        message: (*message).to_owned(),
                        reason: "FieldValueInvalid".to_owned(),
                    })
                    .collect(),
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                retry_after_seconds: 0,
            });
        }
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn only_a_patch_that_no_longer_applies_is_a_conflict() {
        let failed_test = api_error(422, PATCH_NOT_APPLICABLE, &[]);
        assert!(matches!(
            json_patch_error("patch".into(), failed_test),
            Error::Conflict(_)
        ));
        let invalid = api_error(
            422,
            "VMCluster.operator.victoriametrics.com \"a\" is invalid: metadata.labels: Invalid value",
            &[("metadata.labels", "Invalid value")],
        );
        assert!(matches!(
            json_patch_error("patch".into(), invalid),
            Error::Api { .. }
        ));
        assert!(matches!(
            json_patch_error("patch".into(), api_error(409, "conflict", &[])),
            Error::Conflict(_)
        ));
        assert!(matches!(
            json_patch_error("patch".into(), api_error(500, "boom", &[])),
            Error::Api { .. }
        ));
    }
}
