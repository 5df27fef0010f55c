//! Checks the files under deploy/: every YAML and JSON file parses, every
//! metric the alerts and the dashboard query is one pgveil exports, the
//! PrometheusRule carries the same rules as the plain rules file, the policy
//! copies in the kustomization match policies/, and the Deployment keeps the
//! settings that hot reload and draining depend on.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde::Deserialize;
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn deploy_files(extensions: &[&str]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&root().join("deploy"), &mut all);
    all.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
    });
    all.sort();
    all
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (possibly multi-document) YAML file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn yaml(path: &str) -> Value {
    let docs = yaml_documents(&root().join(path));
    assert_eq!(docs.len(), 1, "{path}: expected one document");
    docs.into_iter().next().expect("one document")
}

fn dashboard() -> serde_json::Value {
    let path = root().join("deploy/grafana/pgveil-dashboard.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Metric names registered in the source: the `"pgveil_…"` string literals
/// of the files that create the metrics.
fn exported_metrics() -> BTreeSet<String> {
    let literal = Regex::new(r#""(pgveil_[a-z0-9_]+)""#).expect("regex");
    let mut names = BTreeSet::new();
    for file in ["src/observe/mod.rs", "src/policy/store.rs"] {
        let text = read(&root().join(file));
        names.extend(literal.captures_iter(&text).map(|c| c[1].to_string()));
    }
    // Guard against the grep silently finding nothing after a refactor.
    for expected in [
        "pgveil_connections_active",
        "pgveil_result_sets_total",
        "pgveil_protected_rows_read_total",
        "pgveil_policy_reload_failures_total",
    ] {
        assert!(names.contains(expected), "{expected} not found in src/");
    }
    names
}

/// `x_seconds_bucket` -> `x_seconds` when `x_seconds` is an exported
/// histogram; other names unchanged.
fn histogram_family(name: &str, exported: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if exported.contains(base) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

/// All source text, to look label values up in.
fn source_text() -> String {
    let mut files = Vec::new();
    files_under(&root().join("src"), &mut files);
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| read(p))
        .collect()
}

fn rules_of(groups: &Value) -> Vec<&Value> {
    groups
        .as_sequence()
        .expect("groups is a list")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules is a list"))
        .collect()
}

fn alert_exprs() -> Vec<(String, String)> {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let rule = yaml("deploy/kubernetes/monitoring/prometheusrule.yaml");
    rules_of(&alerts["groups"])
        .into_iter()
        .chain(rules_of(&rule["spec"]["groups"]))
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).expect("name");
            let expr = r["expr"].as_str().expect("expr is a string");
            (name.to_string(), expr.to_string())
        })
        .collect()
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let dash = dashboard();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("target expr");
            exprs.push((format!("panel {title}"), expr.to_string()));
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["query"]["query"].as_str() {
            exprs.push((format!("variable {}", var["name"]), q.to_string()));
        }
    }
    exprs
}

#[test]
fn every_yaml_and_json_file_parses() {
    let yamls = deploy_files(&["yaml", "yml"]);
    assert!(yamls.len() >= 8, "found only {yamls:?}");
    for path in &yamls {
        let docs = yaml_documents(path);
        assert!(
            docs.iter().any(|d| !d.is_null()),
            "{}: no document",
            path.display()
        );
        // Kubernetes objects name their kind and version.
        for doc in docs.iter().filter(|d| d.get("kind").is_some()) {
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{}: {:?} without apiVersion",
                path.display(),
                doc["kind"]
            );
        }
    }
    for path in deploy_files(&["json"]) {
        serde_json::from_str::<serde_json::Value>(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let exported = exported_metrics();
    let used = Regex::new(r"\bpgveil_[a-z0-9_]+").expect("regex");
    let label = Regex::new(r#"\b(reason|outcome|direction)\s*=~?\s*"([a-z_|]+)""#).expect("regex");
    let source = source_text();
    let mut seen = HashSet::new();
    for (origin, expr) in alert_exprs().into_iter().chain(dashboard_exprs()) {
        for m in used.find_iter(&expr) {
            let name = histogram_family(m.as_str(), &exported);
            assert!(
                exported.contains(&name),
                "{origin}: `{}` is not a metric pgveil exports ({exported:?})",
                m.as_str()
            );
            seen.insert(name);
        }
        for c in label.captures_iter(&expr) {
            for value in c[2].split('|') {
                assert!(
                    source.contains(&format!("\"{value}\"")),
                    "{origin}: label value {}=\"{value}\" never appears in src/",
                    &c[1]
                );
            }
        }
    }
    let dashboard_used: HashSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|(_, e)| {
            used.find_iter(e)
                .map(|m| histogram_family(m.as_str(), &exported))
                .collect::<Vec<_>>()
        })
        .collect();
    for name in &exported {
        assert!(
            dashboard_used.contains(name),
            "{name} is exported but not on the dashboard"
        );
    }
    assert!(seen.len() >= exported.len());
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}): install Debian's `prometheus` package (.ci/run does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// promtool accepts both rule files, and the alert unit tests (input
/// series -> expected alerts, labels and annotations) pass.
#[test]
fn promtool_checks_and_tests_the_rules() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yaml"]);
    let rule = yaml("deploy/kubernetes/monitoring/prometheusrule.yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("prometheusrule-spec.yaml");
    std::fs::write(&spec, serde_yaml::to_string(&rule["spec"]).expect("yaml")).expect("write");
    promtool(&["check", "rules", spec.to_str().expect("utf-8 path")]);
    let tested = promtool(&["test", "rules", "deploy/prometheus/alerts_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn prometheus_rule_matches_plain_rules_file() {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let rule = yaml("deploy/kubernetes/monitoring/prometheusrule.yaml");
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "prometheusrule.yaml must carry the groups of deploy/prometheus/alerts.yaml"
    );
}

#[test]
fn every_alert_is_documented() {
    let alerts = yaml("deploy/prometheus/alerts.yaml");
    let readme = read(&root().join("deploy/README.md")).to_lowercase();
    let mut names = HashSet::new();
    for rule in rules_of(&alerts["groups"]) {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(names.insert(name), "duplicate alert {name}");
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("info" | "warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let url = rule["annotations"]["runbook_url"].as_str().expect("url");
        let anchor = url
            .rsplit_once('#')
            .map(|(_, a)| a)
            .expect("runbook anchor");
        assert!(
            readme.contains(&format!("### {anchor}\n")),
            "{name}: deploy/README.md has no section `### {anchor}`"
        );
    }
    for expected in [
        "PgveilPolicyReloadFailed",
        "PgveilResultsWithheld",
        "PgveilUpstreamConnectFailures",
        "PgveilConnectionsNearMax",
        "PgveilTargetDown",
        "PgveilAuthFailuresSpike",
        "PgveilStatementsBlockedSpike",
        "PgveilBulkProtectedRead",
        "PgveilRowDescriptionOverride",
        "PgveilAuditRecordsDropped",
        "PgveilAuditWriteErrors",
    ] {
        assert!(names.contains(expected), "missing alert {expected}");
    }
}

#[test]
fn policy_copies_match_and_pass_check() {
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let generated: Vec<&str> = kustomization["configMapGenerator"][0]["files"]
        .as_sequence()
        .expect("configMapGenerator files")
        .iter()
        .map(|f| f.as_str().expect("file name"))
        .collect();
    let dir = root().join("deploy/kubernetes/policies");
    let mut copies = Vec::new();
    files_under(&dir, &mut copies);
    assert!(!copies.is_empty());
    for copy in &copies {
        let name = copy.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(
            read(copy),
            read(&root().join("policies").join(name)),
            "deploy/kubernetes/policies/{name} differs from policies/{name}: copy it again"
        );
        assert!(
            generated.contains(&format!("policies/{name}").as_str()),
            "{name} is not in the configMapGenerator"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(["check", "--skip-key-bytes"])
        .arg(&dir)
        .output()
        .expect("run pgveil check");
    assert!(
        out.status.success(),
        "pgveil check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str())
}

#[test]
fn deployment_keeps_reload_and_drain_working() {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    assert!(deployment["spec"]["replicas"].as_u64().expect("replicas") >= 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // Grace period covers preStop + drain timeout.
    let drain: u64 = env_value(container, "PGVEIL_DRAIN_TIMEOUT")
        .expect("PGVEIL_DRAIN_TIMEOUT")
        .parse()
        .expect("number");
    let pre_stop: u64 = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .and_then(|c| c.last())
        .and_then(|s| s.as_str())
        .map_or(0, |s| s.parse().expect("sleep seconds"));
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > drain + pre_stop,
        "grace {grace} <= drain {drain} + preStop {pre_stop}"
    );

    // Policies: a directory mount (no subPath) at PGVEIL_POLICIES.
    let mounts = container["volumeMounts"].as_sequence().expect("mounts");
    for mount in mounts {
        assert!(mount.get("subPath").is_none(), "subPath blocks updates");
    }
    let policies = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("policies"))
        .expect("policies mount");
    assert_eq!(
        policies["mountPath"].as_str(),
        env_value(container, "PGVEIL_POLICIES")
    );

    // Probes hit /healthz on the metrics port, which listens beyond loopback.
    let metrics_port = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .and_then(|p| p["containerPort"].as_u64())
        .expect("metrics port");
    assert_eq!(
        env_value(container, "PGVEIL_METRICS_LISTEN"),
        Some(format!("0.0.0.0:{metrics_port}").as_str())
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"].as_str(), Some(path));
        assert_eq!(
            container[probe]["httpGet"]["port"].as_str(),
            Some("metrics")
        );
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
}

#[test]
fn dashboard_is_importable() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().expect("schemaVersion") >= 36);
    assert_eq!(dash["__inputs"][0]["name"].as_str(), Some("DS_PROMETHEUS"));
    let mut ids = HashSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let grid = &panel["gridPos"];
        let right = grid["x"].as_u64().expect("x") + grid["w"].as_u64().expect("w");
        assert!(right <= 24, "panel {id} is wider than the grid");
        if panel["type"].as_str() != Some("row") {
            assert_eq!(
                panel["datasource"]["uid"].as_str(),
                Some("${DS_PROMETHEUS}"),
                "panel {id}"
            );
        }
    }
}

/// `kubectl kustomize` needs no cluster; run it when kubectl is installed.
#[cfg(unix)]
#[test]
fn kustomizations_build_if_kubectl_is_installed() {
    let Ok(version) = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("kubectl not installed: skipped");
        return;
    };
    assert!(version.status.success());
    let build = |dir: &Path| {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(dir)
            .output()
            .expect("kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let base = build(&root().join("deploy/kubernetes"));
    for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"] {
        assert!(base.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
    assert!(
        base.contains("name: pgveil-policies\n"),
        "ConfigMap name must stay fixed"
    );

    // The monitoring component, through an overlay in a scratch directory
    // (kustomize wants relative paths).
    let scratch = tempfile::tempdir().expect("tempdir");
    let link = scratch.path().join("deploy");
    std::os::unix::fs::symlink(root().join("deploy"), &link).expect("symlink");
    let overlay = scratch.path().join("overlay");
    std::fs::create_dir(&overlay).expect("mkdir");
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../deploy/kubernetes]\ncomponents: [../deploy/kubernetes/monitoring]\n",
    )
    .expect("write overlay");
    let full = build(&overlay);
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(full.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
    assert!(!full.contains("prometheus.io/scrape"));
}
