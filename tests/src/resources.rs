//! Helpers that act on the API server: CRDs, namespaces, applying YAML.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::ControlPlane;
use crate::paths::project_crd_path;

/// Field manager used by the harness's server-side applies.
pub const FIELD_MANAGER: &str = "vmdistributed-harness";

/// The kinds the controller manages, whose upstream CRDs every integration test installs.
pub const MANAGED_KINDS: [&str; 4] = ["VMCluster", "VMAgent", "VMAuth", "VMSingle"];

/// The VictoriaMetrics operator's own CRD set (full schemas), taken by `tests/envtest/build.sh`
/// from the operator's Go module at the pinned version.
pub fn vm_operator_crd_path() -> Result<std::path::PathBuf> {
    crate::paths::tool_path("vm-operator-crd.yaml")
}

/// The upstream CRDs of the VictoriaMetrics operator for the given kinds (all kinds when `kinds`
/// is empty), never its `VMDistributed` CRD: this project serves its own.
pub fn vm_operator_crds(kinds: &[&str]) -> Result<Vec<CustomResourceDefinition>> {
    let path = vm_operator_crd_path()?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut crds = Vec::new();
    for doc in parse_yaml_documents(&text).with_context(|| format!("parsing {}", path.display()))? {
        let crd: CustomResourceDefinition = serde_json::from_value(doc)
            .with_context(|| format!("{} holds a document that is not a CRD", path.display()))?;
        let kind = crd.spec.names.kind.as_str();
        if kind != "VMDistributed" && (kinds.is_empty() || kinds.contains(&kind)) {
            crds.push(crd);
        }
    }
    if !kinds.is_empty() && crds.len() != kinds.len() {
        bail!("{} lacks some of the CRDs {kinds:?}", path.display());
    }
    Ok(crds)
}

/// Applies the upstream VictoriaMetrics operator CRDs for `kinds` (all when empty, see
/// [`vm_operator_crds`]) and waits until they are Established.
pub async fn install_vm_operator_crds(client: &Client, kinds: &[&str]) -> Result<()> {
    let crds = vm_operator_crds(kinds)?;
    let names = apply_crds(client, crds).await?;
    for name in &names {
        wait_crd_established(client, name, Duration::from_secs(60)).await?;
    }
    Ok(())
}

impl ControlPlane {
    /// Installs the project CRD and the upstream CRDs of [`MANAGED_KINDS`] and waits until all
    /// are Established. Runs once per control plane; later calls return at once.
    pub async fn install_crds(&self) -> Result<()> {
        self.crds
            .get_or_try_init(|| async {
                let client = self.client().await?;
                install_crds(&client).await
            })
            .await
            .map(|_| ())
    }
}

/// Applies the project CRD ([`crate::project_crd_path`]) and the upstream VictoriaMetrics operator
/// CRDs of [`MANAGED_KINDS`] and waits until every CRD is Established.
pub async fn install_crds(client: &Client) -> Result<()> {
    let mut names = apply_crd_file(client, &project_crd_path()).await?;
    names.extend(apply_crds(client, vm_operator_crds(&MANAGED_KINDS)?).await?);
    for name in &names {
        wait_crd_established(client, name, Duration::from_secs(60)).await?;
    }
    Ok(())
}

async fn apply_crds(client: &Client, crds: Vec<CustomResourceDefinition>) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for crd in crds {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    Ok(names)
}

/// Server-side applies every CRD in a YAML file; returns their names.
pub async fn apply_crd_file(client: &Client, path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for doc in parse_yaml_documents(&text).with_context(|| format!("parsing {}", path.display()))? {
        let crd: CustomResourceDefinition = serde_json::from_value(doc)
            .with_context(|| format!("{} is not a CRD", path.display()))?;
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name} from {}", path.display()))?;
        names.push(name);
    }
    Ok(names)
}

/// Waits until the CRD's `Established` condition is True.
pub async fn wait_crd_established(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let crd = api.get(name).await?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("CRD {name} not Established after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a namespace with a unique name starting with `prefix` and returns the name.
pub async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let clean = clean.trim_matches('-');
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let suffix = (nanos ^ std::process::id().rotate_left(16)) & 0xffffff;
    let name = format!(
        "{}-{}-{suffix:06x}",
        if clean.is_empty() { "test" } else { clean },
        N.fetch_add(1, Ordering::Relaxed)
    );
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}

/// Parses multi-document YAML into JSON values (empty documents are skipped).
pub fn parse_yaml_documents(yaml: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| anyhow!("{e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Server-side applies every document of `yaml` (force, [`FIELD_MANAGER`]), putting namespaced
/// objects without a namespace into `namespace`. Returns the objects as stored.
pub async fn apply_yaml(
    client: &Client,
    namespace: Option<&str>,
    yaml: &str,
) -> Result<Vec<DynamicObject>> {
    apply_yaml_with(
        client,
        namespace,
        yaml,
        &PatchParams::apply(FIELD_MANAGER).force(),
    )
    .await
}

/// [`apply_yaml`] with explicit patch parameters (e.g. `.validation_strict()` or a dry run).
pub async fn apply_yaml_with(
    client: &Client,
    namespace: Option<&str>,
    yaml: &str,
    params: &PatchParams,
) -> Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for doc in parse_yaml_documents(yaml)? {
        out.push(apply_value(client, namespace, doc, params).await?);
    }
    Ok(out)
}

/// Server-side applies one object given as JSON.
pub async fn apply_value(
    client: &Client,
    namespace: Option<&str>,
    object: Value,
    params: &PatchParams,
) -> Result<DynamicObject> {
    let (api, name) = dynamic_api_for(client, namespace, &object).await?;
    api.patch(&name, params, &Patch::Apply(&object))
        .await
        .with_context(|| format!("applying {} {name}", object["kind"].as_str().unwrap_or("?")))
}

/// The dynamic API for an object's `apiVersion`/`kind` (looked up through discovery) and its name.
pub async fn dynamic_api_for(
    client: &Client,
    namespace: Option<&str>,
    object: &Value,
) -> Result<(Api<DynamicObject>, String)> {
    let api_version = object["apiVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("object without apiVersion"))?;
    let kind = object["kind"]
        .as_str()
        .ok_or_else(|| anyhow!("object without kind"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("{kind} without metadata.name"))?
        .to_string();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {api_version} {kind}"))?;
    let api = if caps.scope == Scope::Namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .or(namespace)
            .ok_or_else(|| anyhow!("{kind} {name} is namespaced but no namespace was given"))?;
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    Ok((api, name))
}
