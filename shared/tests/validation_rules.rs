//! Table tests for every single-object validation rule of docs/api.md "Validation summary",
//! including the upstream cases.

use std::path::PathBuf;

use serde_json::{Value, json};
use shared::validation::{Report, validate_value};

/// A valid two-zone object whose clusters are created from zoneCommon, versions chosen (no
/// warning about versions the controller would pin).
fn base() -> Value {
    json!({
        "apiVersion": "operator.victoriametrics.com/v1alpha1",
        "kind": "VMDistributed",
        "metadata": {"name": "vmd", "namespace": "monitoring"},
        "spec": {
            "zoneCommon": {
                "vmcluster": {"spec": {
                    "clusterVersion": "v1.120.0-cluster",
                    "vminsert": {"replicaCount": 1},
                    "vmselect": {"replicaCount": 1},
                    "vmstorage": {"replicaCount": 1}
                }},
                "vmagent": {"spec": {"image": {"tag": "v1.120.0"}}}
            },
            "zones": [{"name": "zone-a"}, {"name": "zone-b"}]
        }
    })
}

/// (what the case shows, the object, the expected errors as (path, message fragment)).
type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

fn with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut value = base();
    mutate(&mut value);
    value
}

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("example")).expect("YAML")
}

/// Assert that `report` has exactly the errors `expected` (path, message fragment), in any order.
#[track_caller]
fn assert_errors(report: &Report, expected: &[(&str, &str)]) {
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        report.errors.len(),
        expected.len(),
        "expected {expected:?}, got {errors:#?}"
    );
    for (path, fragment) in expected {
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.path == *path && e.message.contains(fragment)),
            "no error at {path} containing {fragment:?} in {errors:#?}"
        );
    }
}

#[track_caller]
fn assert_warning(report: &Report, fragment: &str) {
    assert!(
        report.warnings.iter().any(|w| w.contains(fragment)),
        "no warning containing {fragment:?} in {:#?}",
        report.warnings
    );
}

#[test]
fn valid_base_and_examples_have_no_errors() {
    let report = validate_value(&base(), None);
    assert_errors(&report, &[]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    for name in [
        "seed.yaml",
        "distributed-chart.yaml",
        "zone-template.yaml",
        "license.yaml",
        "ref.yaml",
    ] {
        let report = validate_value(&example(name), None);
        assert_errors(&report, &[]);
    }
}

#[test]
fn errors_carry_path_and_display_as_path_colon_message() {
    let report = validate_value(
        &with(|v| v["spec"]["zones"][1]["name"] = json!("Zone_B")),
        None,
    );
    assert_eq!(report.errors.len(), 1);
    let text = report.errors[0].to_string();
    assert!(
        text.starts_with("spec.zones[1].name: zone name \"Zone_B\" must be a DNS-1123 label"),
        "{text}"
    );
    assert!(report.error_summary().contains("spec.zones[1].name"));
}

#[test]
fn zones_rules() {
    let cases: Vec<Case> = vec![
        (
            "no zones",
            with(|v| v["spec"]["zones"] = json!([])),
            vec![("spec.zones", "at least one zone")],
        ),
        (
            "duplicate zone names",
            with(|v| v["spec"]["zones"] = json!([{"name": "a"}, {"name": "b"}, {"name": "a"}])),
            vec![(
                "spec.zones[2].name",
                "duplicate zone name \"a\" (already used by spec.zones[0])",
            )],
        ),
        (
            "upper case and underscore",
            with(|v| v["spec"]["zones"][0]["name"] = json!("Zone_A")),
            vec![("spec.zones[0].name", "DNS-1123 label")],
        ),
        (
            "empty zone name",
            with(|v| v["spec"]["zones"][0]["name"] = json!("")),
            vec![("spec.zones[0].name", "must not be empty")],
        ),
        (
            "zone name too long for a label",
            with(|v| v["spec"]["zones"][0]["name"] = json!("z".repeat(64))),
            vec![("spec.zones[0].name", "64 characters")],
        ),
        (
            "%ZONE% in a zone name",
            with(|v| v["spec"]["zones"][0]["name"] = json!("%ZONE%-a")),
            vec![(
                "spec.zones[0].name",
                "%ZONE% is only replaced in spec.zoneCommon",
            )],
        ),
    ];
    for (what, value, expected) in cases {
        let report = validate_value(&value, None);
        eprintln!("case: {what}");
        assert_errors(&report, &expected);
    }
}

/// Rendering and the rollout are quadratic in zones (every agent writes to every zone, the
/// VMAuth is rendered once per zone left out), so their number is bounded; the bound is
/// checked before any per-zone rule, and only the count is reported.
#[test]
fn zones_are_limited_to_sixteen() {
    let zones = |n: usize| -> Value {
        (0..n)
            .map(|i| json!({"name": format!("zone-{i}")}))
            .collect::<Vec<_>>()
            .into()
    };
    let report = validate_value(&with(|v| v["spec"]["zones"] = zones(16)), None);
    assert!(report.is_valid(), "{report:#?}");
    let report = validate_value(&with(|v| v["spec"]["zones"] = zones(17)), None);
    assert_errors(
        &report,
        &[("spec.zones", "at most 16 zones are supported, got 17")],
    );
    // Thousands of invalid zones: one error, not one per zone.
    let many = with(|v| {
        v["spec"]["zones"] = (0..5000)
            .map(|_| json!({"name": "Not_A_Label"}))
            .collect::<Vec<_>>()
            .into();
    });
    assert_errors(
        &validate_value(&many, None),
        &[("spec.zones", "at most 16 zones are supported, got 5000")],
    );
}

#[test]
fn child_name_rules() {
    let long = |n: usize| "c".repeat(n);
    let cases: Vec<Case> = vec![
        (
            "duplicate resolved cluster names",
            with(|v| {
                v["spec"]["zones"][0]["vmcluster"] = json!({"name": "shared"});
                v["spec"]["zones"][1]["vmcluster"] = json!({"name": "shared"});
            }),
            vec![(
                "spec.zones[1].vmcluster.name",
                "zone \"zone-b\" resolves to VMCluster \"shared\", which is already the VMCluster of zone \"zone-a\" (spec.zones[0])",
            )],
        ),
        (
            "explicit name colliding with a template",
            with(|v| {
                v["spec"]["zoneCommon"]["vmagent"] = json!({"name": "agent-%ZONE%"});
                v["spec"]["zones"][1]["vmagent"] = json!({"name": "agent-zone-a"});
            }),
            vec![(
                "spec.zones[1].vmagent.name",
                "already the VMAgent of zone \"zone-a\"",
            )],
        ),
        (
            "zoneCommon name without %ZONE% with two zones",
            with(|v| v["spec"]["zoneCommon"]["vmcluster"]["name"] = json!("one")),
            vec![(
                "spec.zoneCommon.vmcluster.name",
                "contains no %ZONE%, so every zone resolves to the same VMCluster \"one\"; add %ZONE%",
            )],
        ),
        (
            "zoneCommon name without %ZONE% with three zones is reported once",
            with(|v| {
                v["spec"]["zoneCommon"]["vmagent"] = json!({"name": "agent"});
                v["spec"]["zones"] = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
            }),
            vec![(
                "spec.zoneCommon.vmagent.name",
                "add %ZONE% (for example \"agent-%ZONE%\")",
            )],
        ),
        (
            "cluster name 43 characters",
            with(|v| v["spec"]["zones"][0]["vmcluster"] = json!({"name": long(43)})),
            vec![(
                "spec.zones[0].vmcluster.name",
                "at most 42 characters, because the VictoriaMetrics operator names the cluster's StatefulSet vmstorage-<name>",
            )],
        ),
        (
            "agent name 43 characters",
            with(|v| v["spec"]["zones"][0]["vmagent"] = json!({"name": long(43)})),
            vec![(
                "spec.zones[0].vmagent.name",
                "a VMAgent name may have at most 42 characters",
            )],
        ),
        (
            "derived name too long",
            with(|v| {
                v["metadata"]["name"] = json!(long(30));
                v["spec"]["zones"][0]["name"] = json!("z".repeat(12));
            }),
            vec![
                ("spec.zones[0].name", "the VMCluster name"),
                ("spec.zones[0].name", "the VMAgent name"),
            ],
        ),
        (
            "template resolving to an invalid name",
            with(|v| v["spec"]["zoneCommon"]["vmcluster"]["name"] = json!("VM-%ZONE%")),
            vec![
                (
                    "spec.zoneCommon.vmcluster.name",
                    "for zone \"zone-a\" the VMCluster name resolves to \"VM-zone-a\"",
                ),
                (
                    "spec.zoneCommon.vmcluster.name",
                    "for zone \"zone-b\" the VMCluster name resolves to \"VM-zone-b\"",
                ),
            ],
        ),
        (
            "vmauth name too long",
            with(|v| v["spec"]["vmauth"] = json!({"name": long(57)})),
            vec![(
                "spec.vmauth.name",
                "a VMAuth name may have at most 56 characters",
            )],
        ),
        (
            "vmauth named after a long metadata.name",
            with(|v| {
                v["metadata"]["name"] = json!(long(57));
                v["spec"]["zoneCommon"]["vmcluster"]["name"] = json!("c-%ZONE%");
                v["spec"]["zoneCommon"]["vmagent"] = json!({"name": "a-%ZONE%"});
            }),
            vec![("metadata.name", "the VMAuth is named after metadata.name")],
        ),
        (
            "vmauth disabled: its name is not checked",
            with(|v| {
                v["spec"]["vmauth"] = json!({"enabled": false, "name": long(57)});
            }),
            vec![],
        ),
        (
            "name and ref both set",
            with(|v| {
                v["spec"]["zones"][0]["vmcluster"] = json!({"name": "x", "ref": {"name": "y"}})
            }),
            vec![(
                "spec.zones[0].vmcluster",
                "set either name or ref, not both",
            )],
        ),
        (
            "vmauth name and ref both set",
            with(|v| v["spec"]["vmauth"] = json!({"name": "x", "ref": {"name": "y"}})),
            vec![("spec.vmauth", "set either name or ref, not both")],
        ),
        (
            "empty ref name",
            with(|v| v["spec"]["zones"][0]["vmagent"] = json!({"ref": {"name": ""}})),
            vec![
                (
                    "spec.zones[0].vmagent.ref.name",
                    "must name the existing VMAgent",
                ),
                ("spec.zones[0].vmagent.ref.name", "must not be empty"),
            ],
        ),
        (
            "missing metadata.name",
            with(|v| v["metadata"] = json!({"namespace": "monitoring"})),
            vec![("metadata.name", "is required")],
        ),
    ];
    for (what, value, expected) in cases {
        eprintln!("case: {what}");
        assert_errors(&validate_value(&value, None), &expected);
    }
}

#[test]
fn cross_namespace_references() {
    let report = validate_value(
        &with(|v| {
            v["spec"]["zones"][0]["vmcluster"] =
                json!({"ref": {"name": "legacy", "namespace": "other"}});
            v["spec"]["vmauth"] = json!({"ref": {"name": "auth", "namespace": "elsewhere"}});
            v["spec"]["zones"][1]["vmagent"] =
                json!({"ref": {"name": "agent", "namespace": "monitoring"}});
        }),
        None,
    );
    assert_errors(
        &report,
        &[
            (
                "spec.zones[0].vmcluster.ref.namespace",
                "cross-namespace reference: VMDistributed monitoring/vmd cannot reference VMCluster other/legacy",
            ),
            (
                "spec.vmauth.ref.namespace",
                "cross-namespace reference: VMDistributed monitoring/vmd cannot reference VMAuth elsewhere/auth",
            ),
        ],
    );
    let exact = report
        .errors
        .iter()
        .find(|e| e.path == "spec.zones[0].vmcluster.ref.namespace")
        .expect("error");
    assert_eq!(
        exact.message,
        "cross-namespace reference: VMDistributed monitoring/vmd cannot reference VMCluster other/legacy"
    );

    // Without a namespace (offline check) the reference cannot be judged: a warning.
    let report = validate_value(
        &with(|v| {
            v["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("namespace");
            v["spec"]["zones"][0]["vmcluster"] =
                json!({"ref": {"name": "legacy", "namespace": "other"}});
        }),
        None,
    );
    assert_errors(&report, &[]);
    assert_warning(
        &report,
        "spec.zones[0].vmcluster.ref.namespace: \"other\" can only be used",
    );
}

#[test]
fn placeholder_rules() {
    let cases: Vec<Case> = vec![
        (
            "%ZONE% in a zone-level child name",
            with(|v| v["spec"]["zones"][0]["vmcluster"] = json!({"name": "vm-%ZONE%"})),
            vec![(
                "spec.zones[0].vmcluster.name",
                "%ZONE% is only replaced in spec.zoneCommon",
            )],
        ),
        (
            "%ZONE% nested in a zone-level spec value and key",
            with(|v| {
                v["spec"]["zones"][1]["vmagent"] = json!({"spec": {
                    "nodeSelector": {"topology.kubernetes.io/zone": "%ZONE%"},
                    "extraArgs": {"x-%ZONE%": "1"}
                }});
            }),
            vec![
                (
                    "spec.zones[1].vmagent.spec.nodeSelector[\"topology.kubernetes.io/zone\"]",
                    "%ZONE%",
                ),
                ("spec.zones[1].vmagent.spec.extraArgs.x-%ZONE%", "%ZONE%"),
            ],
        ),
        (
            "%ZONE% in a zone remoteWrite list",
            with(|v| {
                v["spec"]["zones"][0]["remoteWrite"] = json!({"headers": ["a", "zone: %ZONE%"]})
            }),
            vec![("spec.zones[0].remoteWrite.headers[1]", "%ZONE%")],
        ),
        (
            "%ZONE% in ref, vmauth and license",
            with(|v| {
                v["spec"]["zones"][0]["vmagent"] = json!({"ref": {"name": "a-%ZONE%"}});
                v["spec"]["vmauth"] = json!({"name": "auth-%ZONE%", "spec": {"x": "%ZONE%"}});
                v["spec"]["license"] = json!({"key": "%ZONE%"});
            }),
            vec![
                ("spec.zones[0].vmagent.ref.name", "%ZONE%"),
                ("spec.vmauth.name", "%ZONE%"),
                ("spec.vmauth.spec.x", "%ZONE%"),
                ("spec.license.key", "%ZONE%"),
            ],
        ),
        (
            "%ZONE% in zoneCommon names, specs and remoteWrite is fine",
            with(|v| {
                v["spec"]["zoneCommon"]["vmcluster"]["name"] = json!("vm-%ZONE%");
                v["spec"]["zoneCommon"]["vmcluster"]["spec"]["vmstorage"]["nodeSelector"] =
                    json!({"zone": "%ZONE%"});
                v["spec"]["zoneCommon"]["vmagent"] =
                    json!({"name": "agent-%ZONE%", "spec": {"a": {"%ZONE%": "x"}}});
                v["spec"]["zoneCommon"]["remoteWrite"] = json!({"headers": ["zone: %ZONE%"]});
            }),
            vec![],
        ),
    ];
    for (what, value, expected) in cases {
        eprintln!("case: {what}");
        assert_errors(&validate_value(&value, None), &expected);
    }
}

#[test]
fn free_form_and_patch_directive_rules() {
    let cases: Vec<Case> = vec![
        (
            "zone null-deletes a common key and uses $patch delete/replace",
            with(|v| {
                v["spec"]["zoneCommon"]["vmcluster"]["spec"]["vmselect"]["nodeSelector"] =
                    json!({"zone": "%ZONE%"});
                v["spec"]["zones"][0]["vmcluster"] = json!({"spec": {
                    "vmselect": {"nodeSelector": null},
                    "vmstorage": {"$patch": "replace", "replicaCount": 2}
                }});
                v["spec"]["zones"][1]["vmcluster"] =
                    json!({"spec": {"vmselect": {"nodeSelector": {"$patch": "delete"}}}});
            }),
            vec![],
        ),
        (
            "unknown $patch directive",
            with(|v| {
                v["spec"]["zones"][0]["vmcluster"] =
                    json!({"spec": {"vminsert": {"$patch": "remove"}}})
            }),
            vec![(
                "spec.zones[0].vmcluster.spec.vminsert.$patch",
                "unknown directive \"remove\"",
            )],
        ),
        (
            "spec that is not an object",
            with(|v| v["spec"]["zones"][0]["vmagent"] = json!({"spec": "replicaCount: 1"})),
            vec![("spec.zones[0].vmagent.spec", "must be an object")],
        ),
        (
            "remoteWrite that is a list",
            with(|v| v["spec"]["zoneCommon"]["remoteWrite"] = json!([{"url": "x"}])),
            vec![("spec.zoneCommon.remoteWrite", "must be an object")],
        ),
    ];
    for (what, value, expected) in cases {
        eprintln!("case: {what}");
        assert_errors(&validate_value(&value, None), &expected);
    }
}

#[test]
fn duration_rules() {
    let cases: Vec<Case> = vec![
        (
            "readyTimeout in words",
            with(|v| v["spec"]["zoneCommon"]["readyTimeout"] = json!("5 minutes")),
            vec![(
                "spec.zoneCommon.readyTimeout",
                "invalid duration \"5 minutes\"",
            )],
        ),
        (
            "readyTimeout below 1s",
            with(|v| v["spec"]["zoneCommon"]["readyTimeout"] = json!("500ms")),
            vec![("spec.zoneCommon.readyTimeout", "at least 1s")],
        ),
        (
            "readyTimeout zero",
            with(|v| v["spec"]["zoneCommon"]["readyTimeout"] = json!("0")),
            vec![("spec.zoneCommon.readyTimeout", "at least 1s")],
        ),
        (
            "updatePause negative",
            with(|v| v["spec"]["zoneCommon"]["updatePause"] = json!("-1m")),
            vec![("spec.zoneCommon.updatePause", "must not be negative")],
        ),
        (
            "updatePause without unit",
            with(|v| v["spec"]["zoneCommon"]["updatePause"] = json!("60")),
            vec![("spec.zoneCommon.updatePause", "missing unit")],
        ),
        (
            "license reloadInterval",
            with(|v| v["spec"]["license"] = json!({"key": "k", "reloadInterval": "hourly"})),
            vec![("spec.license.reloadInterval", "invalid duration \"hourly\"")],
        ),
        (
            "valid Go durations",
            with(|v| {
                v["spec"]["zoneCommon"]["readyTimeout"] = json!("1h30m");
                v["spec"]["zoneCommon"]["updatePause"] = json!("0s");
                v["spec"]["license"] = json!({"key": "k", "reloadInterval": "1.5h"});
            }),
            vec![],
        ),
    ];
    for (what, value, expected) in cases {
        eprintln!("case: {what}");
        let report = validate_value(&value, None);
        assert_errors(&report, &expected);
        for error in &report.errors {
            if error.message.contains("invalid duration") && !error.message.contains("negative") {
                assert!(
                    error.message.contains("\"5m\""),
                    "an example is given: {error}"
                );
            }
        }
    }
}

#[test]
fn backend_consistency_rules() {
    let cases: Vec<Case> = vec![
        (
            "vmsingle settings with the default backend",
            with(|v| {
                v["spec"]["zoneCommon"]["vmsingle"] = json!({"spec": {}});
                v["spec"]["zones"][1]["vmsingle"] = json!({"name": "s"});
            }),
            vec![
                (
                    "spec.zoneCommon.vmsingle",
                    "VMSingle settings are not used with backendType VMCluster",
                ),
                (
                    "spec.zones[1].vmsingle",
                    "VMSingle settings are not used with backendType VMCluster",
                ),
            ],
        ),
        (
            "vmcluster settings with backendType VMSingle",
            with(|v| {
                v["spec"]["backendType"] = json!("VMSingle");
                v["spec"]["zoneCommon"]["vmsingle"] = json!({"spec": {"retentionPeriod": "1"}});
                v["spec"]["zones"][0]["vmcluster"] = json!({"name": "c"});
            }),
            vec![
                (
                    "spec.zoneCommon.vmcluster",
                    "VMCluster settings are not used with backendType VMSingle",
                ),
                (
                    "spec.zones[0].vmcluster",
                    "VMCluster settings are not used with backendType VMSingle",
                ),
            ],
        ),
        (
            "vmsingle backend with its own settings",
            with(|v| {
                v["spec"]["backendType"] = json!("VMSingle");
                v["spec"]["zoneCommon"] = json!({"vmsingle": {"name": "single-%ZONE%", "spec": {"retentionPeriod": "1"}}});
            }),
            vec![],
        ),
        (
            "unknown backendType is a decoding error with its path",
            with(|v| v["spec"]["backendType"] = json!("VMCluster2")),
            vec![("spec.backendType", "unknown variant")],
        ),
        (
            "unknown trafficMode is a decoding error with its path",
            with(|v| v["spec"]["zones"][1]["trafficMode"] = json!("readwrite")),
            vec![("spec.zones[1].trafficMode", "unknown variant")],
        ),
    ];
    for (what, value, expected) in cases {
        eprintln!("case: {what}");
        assert_errors(&validate_value(&value, None), &expected);
    }
}

#[test]
fn cluster_creation_needs_vminsert_and_vmselect() {
    // A cluster to be created with a partial spec: error.
    let report = validate_value(
        &with(|v| {
            v["spec"]["zoneCommon"]["vmcluster"]["spec"] = json!({"vmstorage": {"replicaCount": 1}})
        }),
        None,
    );
    assert_errors(
        &report,
        &[
            (
                "spec.zones[0].vmcluster.spec",
                "VMCluster \"vmd-zone-a\" would be created by this VMDistributed, but its merged spec has no vminsert and vmselect",
            ),
            ("spec.zones[1].vmcluster.spec", "no vminsert and vmselect"),
        ],
    );
    // The zone can supply the missing part.
    let report = validate_value(
        &with(|v| {
            v["spec"]["zoneCommon"]["vmcluster"]["spec"] = json!({"vminsert": {}, "vmstorage": {}});
            v["spec"]["zones"][0]["vmcluster"] = json!({"spec": {"vmselect": {"replicaCount": 1}}});
        }),
        None,
    );
    assert_errors(
        &report,
        &[("spec.zones[1].vmcluster.spec", "has no vmselect;")],
    );
    // A zone that deletes vminsert from the common spec.
    let report = validate_value(
        &with(|v| {
            v["spec"]["zones"][1]["vmcluster"] = json!({"spec": {"vminsert": {"$patch": "delete"}}})
        }),
        None,
    );
    assert_errors(
        &report,
        &[("spec.zones[1].vmcluster.spec", "has no vminsert;")],
    );
}

#[test]
fn empty_spec_is_adoption_with_a_warning() {
    let report = validate_value(
        &with(|v| {
            v["spec"]["zoneCommon"] = json!({});
            v["spec"]["zones"][0]["vmcluster"] = json!({"name": "existing-a"});
        }),
        None,
    );
    assert_errors(&report, &[]);
    assert_warning(
        &report,
        "spec.zones[0].vmcluster: VMCluster \"existing-a\" has no vminsert, vmselect or vmstorage in its spec, so it is adopted by name and must already exist in monitoring",
    );
    assert_warning(&report, "VMCluster \"vmd-zone-b\"");
    // A ref is never created: no warning and no error for an empty spec.
    let report = validate_value(
        &with(|v| {
            v["spec"]["zoneCommon"] = json!({"vmagent": {"spec": {"image": {"tag": "v1.120.0"}}}});
            v["spec"]["zones"][0]["vmcluster"] = json!({"ref": {"name": "existing-a"}});
            v["spec"]["zones"][1]["vmcluster"] = json!({"ref": {"name": "existing-b"}});
        }),
        None,
    );
    assert_errors(&report, &[]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // VMSingle with an empty spec is adopted too.
    let report = validate_value(
        &with(|v| {
            v["spec"]["backendType"] = json!("VMSingle");
            v["spec"]["zoneCommon"] = json!({});
        }),
        None,
    );
    assert_errors(&report, &[]);
    assert_warning(
        &report,
        "VMSingle \"vmd-zone-a\" has an empty spec, so it is adopted by name",
    );
}

#[test]
fn single_zone_is_a_warning() {
    let report = validate_value(
        &with(|v| v["spec"]["zones"] = json!([{"name": "only"}])),
        None,
    );
    assert_errors(&report, &[]);
    assert_warning(
        &report,
        "spec.zones: a single zone cannot keep serving while it is updated",
    );
}

#[test]
fn the_only_zone_taking_writes_or_reads_is_a_warning() {
    for (mode, traffic) in [
        ("maintenance", vec!["writes", "reads"]),
        ("read-only", vec!["writes"]),
        ("write-only", vec!["reads"]),
    ] {
        let report = validate_value(
            &with(|v| {
                v["spec"]["zones"] =
                    json!([{"name": "zone-a"}, {"name": "zone-b", "trafficMode": mode}]);
            }),
            None,
        );
        assert_errors(&report, &[]);
        assert_eq!(
            report.warnings.len(),
            traffic.len(),
            "{mode}: {:?}",
            report.warnings
        );
        for traffic in traffic {
            assert_warning(
                &report,
                &format!(
                    "spec.zones: zone \"zone-a\" is the only zone whose trafficMode takes {traffic}: it is updated in place"
                ),
            );
        }
    }
    // Two zones taking each: nothing to say.
    let report = validate_value(
        &with(|v| {
            v["spec"]["zones"] = json!([{"name": "zone-a"}, {"name": "zone-b"},
                {"name": "zone-c", "trafficMode": "maintenance"}]);
        }),
        None,
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn all_errors_are_reported_at_once() {
    let report = validate_value(
        &with(|v| {
            v["spec"]["zones"] = json!([
                {"name": "A"},
                {"name": "b", "vmcluster": {"name": "x", "ref": {"name": "y", "namespace": "other"}}},
                {"name": "b"}
            ]);
            v["spec"]["zoneCommon"]["readyTimeout"] = json!("soon");
        }),
        None,
    );
    let paths: Vec<&str> = report.errors.iter().map(|e| e.path.as_str()).collect();
    for path in [
        "spec.zoneCommon.readyTimeout",
        "spec.zones[0].name",
        "spec.zones[1].vmcluster",
        "spec.zones[1].vmcluster.ref.namespace",
        "spec.zones[2].name",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
}

#[test]
fn decoding_problems_become_field_errors() {
    let cases: Vec<(&str, Value, (&str, &str))> = vec![
        (
            "unknown spec field",
            with(|v| v["spec"]["zoneComon"] = json!({})),
            ("spec.zoneComon", "unknown field"),
        ),
        (
            "typo in a zone child",
            with(|v| v["spec"]["zones"][0]["vmcluster"] = json!({"nmae": "x"})),
            ("spec.zones[0].vmcluster.nmae", "unknown field"),
        ),
        (
            "wrong type",
            with(|v| v["spec"]["zones"] = json!({"name": "a"})),
            ("spec.zones", "invalid type"),
        ),
        (
            "zone without name",
            with(|v| v["spec"]["zones"][0] = json!({})),
            ("spec.zones[0]", "missing field `name`"),
        ),
        (
            "wrong kind",
            with(|v| v["kind"] = json!("VMCluster")),
            ("kind", "must be VMDistributed, got \"VMCluster\""),
        ),
        (
            "wrong apiVersion",
            with(|v| v["apiVersion"] = json!("operator.victoriametrics.com/v1beta1")),
            (
                "apiVersion",
                "must be operator.victoriametrics.com/v1alpha1",
            ),
        ),
        ("not an object", json!([1, 2]), ("kind", "got nothing")),
    ];
    for (what, value, (path, fragment)) in cases {
        eprintln!("case: {what}");
        assert_errors(&validate_value(&value, None), &[(path, fragment)]);
    }
}
