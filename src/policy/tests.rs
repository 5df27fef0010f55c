use std::path::{Path, PathBuf};

use super::*;
use crate::analyze::policy_view::{ColumnAction, FilterRight, PolicyView, QualifiedColumn};
use crate::mask;

const EXAMPLE: &str = include_str!("../../tests/fixtures/policy/example.yaml");

/// A temporary policy directory plus a key directory holding `pii`.
struct Fixture {
    dir: tempfile::TempDir,
    keys: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        std::fs::write(keys.path().join("pii"), b"0123456789abcdef").unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Fixture { dir, keys }
    }

    fn load(&self) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load(&[self.dir.path().to_path_buf()], Some(self.keys.path()))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Loads one file and returns its only error, asserting there is one.
fn only_error(text: &str) -> PolicyError {
    let fixture = Fixture::new(&[("p.yaml", text)]);
    let errors = fixture.load().expect_err("policy should be rejected");
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = errors.0.into_iter().next().unwrap();
    assert_eq!(error.location.file, fixture.file("p.yaml"));
    error
}

fn at(error: &PolicyError) -> (usize, usize) {
    (error.location.line, error.location.column)
}

fn column(name: &str) -> QualifiedColumn {
    let mut parts = name.split('.');
    QualifiedColumn {
        schema: parts.next().unwrap().into(),
        table: parts.next().unwrap().into(),
        column: parts.next().unwrap().into(),
    }
}

fn memberships(edges: &[(&str, &str)]) -> RoleMembership {
    RoleMembership::from_edges(edges.iter().map(|(m, g)| (m.to_string(), g.to_string())))
}

fn action_of(view: &RolePolicy, name: &str) -> String {
    match view.column(&column(name)).map(|d| d.action) {
        None => "unprotected".into(),
        Some(ColumnAction::Allow) => "allow".into(),
        Some(ColumnAction::Deny) => "deny".into(),
        Some(ColumnAction::Mask { mask_name, .. }) => format!("mask {mask_name}"),
    }
}

// ---- parsing and merging ----

#[test]
fn the_issue_example_loads() {
    let set = Fixture::new(&[("example.yaml", EXAMPLE)]).load().unwrap();
    assert_eq!(set.protected_columns().count(), 3);
    assert_eq!(set.masks().len(), 4);
    let mut roles: Vec<&str> = set.named_roles().collect();
    roles.sort();
    assert_eq!(roles, ["analyst", "call_center", "compliance", "intern"]);
}

#[test]
fn mask_by_name_and_by_call_parse_to_function_and_arguments() {
    let file = SourceFile::parse(Path::new("e.yaml"), EXAMPLE).unwrap();
    let id = &file.policy.columns["public.customers.id_number"];
    assert_eq!(id.mask.as_ref().unwrap().function, "cn_id_card");
    let keep = id.rules[1].mask.as_ref().unwrap();
    assert_eq!(keep.function, "keep");
    assert_eq!(keep.args["first"], mask::ArgValue::Int(0));
    assert_eq!(keep.args["last"], mask::ArgValue::Int(4));
    let hash = id.rules[2].mask.as_ref().unwrap();
    assert_eq!(hash.args["key"], mask::ArgValue::Str("pii".into()));
}

#[test]
fn files_of_a_directory_merge_and_share_keys() {
    let fixture = Fixture::new(&[
        (
            "a.yaml",
            "version: 1\nkeys: [pii]\ncolumns:\n  public.t.a:\n    mask: redact\n",
        ),
        (
            "b.yaml",
            "version: 1\ncolumns:\n  public.t.b:\n    mask: { fn: hash, key: pii }\n",
        ),
        ("notes.txt", "not a policy"),
    ]);
    let set = fixture.load().unwrap();
    assert_eq!(set.files().len(), 2);
    assert_eq!(set.protected_columns().count(), 2);
}

#[test]
fn an_empty_directory_is_an_error() {
    let fixture = Fixture::new(&[]);
    let errors = fixture.load().unwrap_err();
    assert!(errors.to_string().contains("no policy files"), "{errors}");
}

// ---- every error a DBA can see, with file, line, column and text ----

#[test]
fn yaml_syntax_error_names_line() {
    let error = only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: [redact\n");
    assert_eq!(error.location.line, 5);
    let text = error.to_string();
    assert!(text.contains("p.yaml:5:1: error: YAML syntax:"), "{text}");
}

#[test]
fn unknown_field_suggests_closest_name() {
    let error =
        only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n    rulez: []\n");
    assert_eq!(at(&error), (5, 5));
    let text = error.to_string();
    assert!(text.contains("unknown field `rulez`"), "{text}");
    assert!(text.contains("help: did you mean `rules`?"), "{text}");
}

#[test]
fn unknown_top_level_field_suggests_closest_name() {
    let error = only_error("version: 1\ncolums: {}\n");
    assert_eq!(at(&error), (2, 1));
    assert!(error.to_string().contains("did you mean `columns`?"));
}

#[test]
fn misspelt_action_suggests_value() {
    let error = only_error(
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n    rules:\n      - roles: [x]\n        action: alow\n",
    );
    assert_eq!(at(&error), (7, 17));
    let text = error.to_string();
    assert!(text.contains("unknown variant `alow`"), "{text}");
    assert!(text.contains("did you mean `allow`?"), "{text}");
}

#[test]
fn column_default_cannot_be_clear_text() {
    let error = only_error("version: 1\ncolumns:\n  public.t.c:\n    action: allow\n");
    assert_eq!(at(&error), (4, 13));
    assert!(error
        .to_string()
        .contains("unknown variant `allow`, expected `deny`"));
}

#[test]
fn unknown_mask_function_suggests_catalogue_name() {
    let error = only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: cn_mobil\n");
    assert_eq!(at(&error), (4, 11));
    let text = error.to_string();
    assert!(text.contains("unknown mask function `cn_mobil`"), "{text}");
    assert!(text.contains("did you mean `cn_mobile`?"), "{text}");
}

#[test]
fn unknown_mask_function_in_call_form_points_at_fn() {
    let error =
        only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: { fn: kep, first: 1 }\n");
    assert_eq!(at(&error), (4, 17));
    assert!(error.to_string().contains("did you mean `keep`?"));
}

#[test]
fn unknown_mask_argument_points_at_argument() {
    let error =
        only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: { fn: keep, frist: 1 }\n");
    assert_eq!(at(&error), (4, 23));
    assert!(error
        .to_string()
        .contains("mask `keep` has no argument `frist`"));
}

#[test]
fn non_scalar_mask_argument_is_a_bad_value() {
    let error =
        only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: { fn: keep, first: [1] }\n");
    assert_eq!(at(&error), (4, 30));
    assert!(error
        .to_string()
        .contains("expected a number, string or boolean mask argument"));
}

#[test]
fn bad_filter_value_is_reported_with_the_choices() {
    let error =
        only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n    filter: equal\n");
    assert_eq!(at(&error), (5, 13));
    let text = error.to_string();
    assert!(text.contains("unknown variant `equal`"), "{text}");
    assert!(text.contains("did you mean `equality`?"), "{text}");
}

#[test]
fn key_used_but_not_declared() {
    let error =
        only_error("version: 1\ncolumns:\n  public.t.c:\n    mask: { fn: hash, key: pci }\n");
    assert_eq!(at(&error), (4, 28));
    let text = error.to_string();
    assert!(
        text.contains("key `pci` is used but not declared in `keys:`"),
        "{text}"
    );
    assert!(text.contains("help: add `- pci` under `keys:`"), "{text}");
}

#[test]
fn declared_key_without_bytes() {
    let error = only_error("version: 1\nkeys:\n  - nosuchkey\ncolumns: {}\n");
    assert_eq!(at(&error), (3, 5));
    let text = error.to_string();
    assert!(text.contains("key `nosuchkey` is not available"), "{text}");
    assert!(text.contains("PGVEIL_KEY_NOSUCHKEY"), "{text}");
}

#[test]
fn same_column_in_two_files() {
    let fixture = Fixture::new(&[
        ("a.yaml", "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n"),
        (
            "b.yaml",
            "version: 1\ncolumns:\n  public.t.other:\n    mask: redact\n  public.t.c:\n    action: deny\n",
        ),
    ]);
    let errors = fixture.load().unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.location.file, fixture.file("b.yaml"));
    assert_eq!(at(error), (5, 3));
    let text = error.to_string();
    let first = format!("{}:3:3", fixture.file("a.yaml").display());
    assert!(
        text.contains(&format!(
            "column `public.t.c` is already protected at {first}"
        )),
        "{text}"
    );
    assert!(text.contains("help: keep one entry"), "{text}");
}

#[test]
fn rule_with_no_roles() {
    // One rule without `roles:`, one with an empty list: both are reported.
    let fixture = Fixture::new(&[(
        "p.yaml",
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n    rules:\n      - action: allow\n      - roles: []\n        action: deny\n",
    )]);
    let errors = fixture.load().unwrap_err();
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert_eq!(at(&errors.0[0]), (6, 9));
    assert_eq!(at(&errors.0[1]), (7, 9));
    let text = errors.0[0].to_string();
    assert!(
        text.contains("p.yaml:6:9: error: rule has no roles"),
        "{text}"
    );
    assert!(text.contains("help: add `roles: [ROLE, ...]`"), "{text}");
}

#[test]
fn column_without_default() {
    let error = only_error("version: 1\ncolumns:\n  public.t.c:\n    class: C2\n");
    assert_eq!(at(&error), (3, 3));
    let text = error.to_string();
    assert!(
        text.contains("column `public.t.c` has no default"),
        "{text}"
    );
    assert!(text.contains("never get clear text"), "{text}");
}

#[test]
fn column_name_must_be_schema_table_column() {
    let error = only_error("version: 1\ncolumns:\n  customers.phone:\n    mask: redact\n");
    assert_eq!(at(&error), (3, 3));
    assert!(error
        .to_string()
        .contains("`customers.phone` is not a `schema.table.column` name"));
}

#[test]
fn unsupported_version() {
    let error = only_error("version: 2\n");
    assert_eq!(at(&error), (1, 10));
    assert!(error.to_string().contains("help: write `version: 1`"));
}

#[test]
fn action_and_mask_together() {
    let error = only_error(
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n    rules:\n      - roles: [a]\n        action: allow\n        mask: redact\n",
    );
    assert_eq!(at(&error), (7, 9));
    assert!(error
        .to_string()
        .contains("`action` and `mask` are both set"));
}

#[test]
fn every_error_of_a_load_is_reported_not_only_the_first() {
    let fixture = Fixture::new(&[(
        "p.yaml",
        "version: 1\ncolumns:\n  public.t.a:\n    mask: nope\n  public.t.b:\n    mask: { fn: hash, key: x }\n",
    )]);
    assert_eq!(fixture.load().unwrap_err().0.len(), 2);
}

// ---- rule matching ----

fn example_set() -> PolicySet {
    Fixture::new(&[("example.yaml", EXAMPLE)]).load().unwrap()
}

#[test]
fn nested_membership_matches_a_rule() {
    let set = example_set();
    // alice -> support_team -> call_center
    let members = memberships(&[("alice", "support_team"), ("support_team", "call_center")]);
    let view = set.for_role("alice", &members);
    assert_eq!(action_of(&view, "public.customers.id_number"), "mask keep");
    let decision = view.column(&column("public.customers.id_number")).unwrap();
    assert_eq!(decision.filter, FilterRight::Equality);
    assert_eq!(
        decision.rule,
        "public.customers.id_number rule 2 (roles: call_center)"
    );
    assert_eq!(decision.class.as_deref(), Some("C2"));
    assert!(view.table_denied("public", "audit_trail").is_some());
}

#[test]
fn first_matching_rule_wins() {
    let set = example_set();
    // Member of both compliance (rule 1, allow) and intern (rule 4, deny).
    let members = memberships(&[("bob", "intern"), ("bob", "compliance")]);
    let view = set.for_role("bob", &members);
    assert_eq!(action_of(&view, "public.customers.id_number"), "allow");
    let members = memberships(&[("carol", "intern")]);
    let view = set.for_role("carol", &members);
    assert_eq!(action_of(&view, "public.customers.id_number"), "deny");
}

#[test]
fn a_role_no_rule_names_gets_the_default() {
    let set = example_set();
    let view = set.for_role("stranger", &RoleMembership::default());
    assert_eq!(
        action_of(&view, "public.customers.id_number"),
        "mask cn_id_card"
    );
    assert_eq!(action_of(&view, "public.customers.phone"), "mask cn_mobile");
    assert_eq!(action_of(&view, "public.cards.cvv"), "deny");
    assert_eq!(
        action_of(&view, "public.customers.created_at"),
        "unprotected"
    );
    let decision = view.column(&column("public.customers.id_number")).unwrap();
    assert_eq!(decision.rule, "public.customers.id_number default");
    assert_eq!(decision.filter, FilterRight::Deny);
    assert!(view.is_restricted());
    assert!(view.table_denied("public", "audit_trail").is_none());
    assert!(view.function_allowed("public", "safe_lookup"));
    assert!(!view.function_allowed("public", "dump_everything"));
}

#[test]
fn mask_id_gives_back_the_compiled_mask() {
    let set = example_set();
    let view = set.for_role("analyst", &RoleMembership::default());
    let Some(ColumnAction::Mask { mask_id, mask_name }) = view
        .column(&column("public.customers.id_number"))
        .map(|d| d.action)
    else {
        panic!("analyst should get a mask");
    };
    assert_eq!(mask_name, "hash");
    assert_eq!(set.mask(mask_id).name(), "hash");
}

#[test]
fn a_role_with_clear_text_everywhere_is_unrestricted() {
    let fixture = Fixture::new(&[(
        "p.yaml",
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n    rules:\n      - roles: [dba]\n        action: allow\n",
    )]);
    let set = fixture.load().unwrap();
    let members = memberships(&[("root_user", "dba")]);
    let view = set.for_role("root_user", &members);
    assert!(view.is_unrestricted());
    assert!(view.function_allowed("public", "anything"));
    assert!(!set.for_role("dba_friend", &members).is_unrestricted());
}

#[test]
fn membership_refresh_rebuilds_the_cached_view() {
    let set = example_set();
    let before = memberships(&[]);
    assert_eq!(
        action_of(&set.for_role("dave", &before), "public.customers.id_number"),
        "mask cn_id_card"
    );
    let after = memberships(&[("dave", "compliance")]);
    assert_eq!(
        action_of(&set.for_role("dave", &after), "public.customers.id_number"),
        "allow"
    );
}

#[test]
fn membership_closure_is_transitive_and_survives_cycles() {
    let members = memberships(&[("a", "b"), ("b", "c"), ("c", "a")]);
    let roles: Vec<String> = members.effective_roles("a").into_iter().collect();
    assert_eq!(roles, ["a", "b", "c"]);
}

// ---- store and reload ----

#[test]
fn reload_swaps_a_good_set_and_keeps_the_last_good_one_on_error() {
    let fixture = Fixture::new(&[("example.yaml", EXAMPLE)]);
    let store = PolicyStore::load(fixture.dir.path(), Some(fixture.keys.path())).unwrap();
    let registry = prometheus::Registry::new();
    store.register_metrics(&registry).unwrap();
    let first = store.current();
    assert_eq!(first.version(), 1);

    // Unchanged files: nothing to do for the watcher.
    assert_eq!(store.reload_if_changed().unwrap(), 1);

    std::fs::write(
        fixture.file("extra.yaml"),
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n",
    )
    .unwrap();
    assert_eq!(store.reload_if_changed().unwrap(), 2);
    assert_eq!(store.current().protected_columns().count(), 4);
    // A statement that started before keeps its set.
    assert_eq!(first.protected_columns().count(), 3);

    std::fs::write(fixture.file("extra.yaml"), "version: 1\ncolumns: [\n").unwrap();
    let errors = store.reload().unwrap_err();
    assert!(errors.to_string().contains("extra.yaml:3:1"), "{errors}");
    assert_eq!(store.current().version(), 2);

    let metrics = metric_values(&registry);
    assert_eq!(metrics["pgveil_policy_reloads_total"], 1.0);
    assert_eq!(metrics["pgveil_policy_reload_failures_total"], 1.0);
    assert_eq!(metrics["pgveil_policy_version"], 2.0);

    // An explicit reload (SIGHUP) recompiles even unchanged files, so
    // rotated key bytes are read again.
    std::fs::write(
        fixture.file("extra.yaml"),
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n",
    )
    .unwrap();
    assert_eq!(store.reload().unwrap(), 3);
    assert_eq!(store.reload().unwrap(), 4);
}

fn metric_values(registry: &prometheus::Registry) -> std::collections::HashMap<String, f64> {
    registry
        .gather()
        .into_iter()
        .map(|family| {
            let metric = &family.get_metric()[0];
            let value = if family.get_field_type() == prometheus::proto::MetricType::GAUGE {
                metric.get_gauge().get_value()
            } else {
                metric.get_counter().get_value()
            };
            (family.name().to_string(), value)
        })
        .collect()
}

#[test]
fn broken_start_fails_fast_with_file_and_line() {
    let fixture = Fixture::new(&[(
        "p.yaml",
        "version: 1\ncolumns:\n  public.t.c:\n    mask: nope\n",
    )]);
    let Err(errors) = PolicyStore::load(fixture.dir.path(), None) else {
        panic!("a broken policy must not load");
    };
    assert!(errors
        .to_string()
        .contains("p.yaml:4:11: error: unknown mask function `nope`"));
}

#[test]
fn watcher_reloads_on_change() {
    let fixture = Fixture::new(&[("example.yaml", EXAMPLE)]);
    let store = PolicyStore::load(fixture.dir.path(), Some(fixture.keys.path())).unwrap();
    let _watcher = store.watch().unwrap();
    std::fs::write(
        fixture.file("extra.yaml"),
        "version: 1\ncolumns:\n  public.t.c:\n    mask: redact\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.current().version() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(store.current().version(), 2);
    assert_eq!(store.current().protected_columns().count(), 4);
}

// ---- schema and upstream (pure part) ----

#[test]
fn schema_describes_the_loader_types() {
    let schema = cli::schema_json();
    let text = schema.to_string();
    for needle in [
        "\"columns\"",
        "\"rules\"",
        "\"equality\"",
        "\"cn_id_card\"",
        "\"fn\"",
    ] {
        assert!(text.contains(needle), "schema lacks {needle}");
    }
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false)
    );
}

#[test]
fn upstream_check_reports_missing_columns_tables_and_unknown_roles() {
    let set = example_set();
    let mut catalog = upstream::UpstreamCatalog::default();
    catalog
        .relations
        .insert(("public".into(), "customers".into()));
    catalog.relations.insert(("public".into(), "cards".into()));
    catalog
        .column_types
        .insert(column("public.customers.id_number"), "text".into());
    catalog
        .column_types
        .insert(column("public.cards.cvv"), "text".into());
    catalog
        .roles
        .extend(["compliance", "call_center", "analyst"].map(String::from));
    let findings = upstream::check_catalog(&set, &catalog);
    let text = findings.to_string();
    assert!(
        text.contains(":19:3: error: column `public.customers.phone` does not exist"),
        "{text}"
    );
    assert!(
        text.contains(":24:3: error: table `public.audit_trail` does not exist"),
        "{text}"
    );
    assert!(
        text.contains("warning: role `intern` does not exist"),
        "{text}"
    );
    assert!(
        text.contains("warning: function `public.safe_lookup` does not exist"),
        "{text}"
    );
    assert!(findings.has_errors());
}

// ---- packs ----

#[test]
fn the_packs_compile_together() {
    let packs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = PolicySet::load_with(&[packs], KeySource::NamesOnly).unwrap();
    let members = RoleMembership::default();
    let stranger = set.for_role("developer", &members);
    assert_eq!(action_of(&stranger, "public.cards.cvv"), "deny");
    assert_eq!(action_of(&stranger, "payments.cards.pan"), "mask bank_card");
    assert_eq!(
        action_of(&stranger, "public.customers.id_number"),
        "mask cn_id_card"
    );
    // C3 secrets stay denied even for compliance.
    let compliance = set.for_role("compliance", &members);
    assert_eq!(action_of(&compliance, "public.cards.cvv"), "deny");
    assert_eq!(
        action_of(&compliance, "public.customers.id_number"),
        "allow"
    );
}

#[test]
fn names_only_still_reports_undeclared_keys() {
    let fixture = Fixture::new(&[(
        "p.yaml",
        "version: 1\ncolumns:\n  public.t.c:\n    mask: { fn: hash, key: pci }\n",
    )]);
    let errors = PolicySet::load_with(&[fixture.dir.path().to_path_buf()], KeySource::NamesOnly)
        .unwrap_err();
    assert!(errors
        .to_string()
        .contains("key `pci` is used but not declared"));
}
