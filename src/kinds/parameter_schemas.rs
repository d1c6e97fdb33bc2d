//! The parameter schemas the kinds generate, as the language's schema check applies
//! them: every problem at once, ranges, suggestions, templates.

use crate::lang::kind::StepKind;
use crate::lang::load::load;
use crate::lang::node::Node;
use crate::lang::schema_check::{check, coerce};
use crate::lang::source::SourceFile;

fn kind(name: &str) -> StepKind {
    StepKind::find(super::CATALOG, name).unwrap()
}
fn with(text: &str) -> Node {
    load(&SourceFile::new("t.yaml", text)).unwrap()
}

fn codes(kind: StepKind, text: &str) -> Vec<(&'static str, String)> {
    check(&with(text), &kind.parameters_schema(), "with")
        .into_iter()
        .map(|problem| (problem.code.as_str(), problem.message))
        .collect()
}

#[test]
fn reports_every_problem_of_a_step_at_once() {
    let found = codes(kind("k8s.scale"), "namespce: x\nreplicas: many\ndeadline: 5 minutes\n");
    let names: Vec<&str> = found.iter().map(|(code, _)| *code).collect();
    // `namespce` is reported once, as unknown with a suggestion, not also as a missing `namespace`.
    assert_eq!(names, ["unknown-parameter", "parameter-type", "duration"], "{found:?}");
}

#[test]
fn numbers_are_held_to_their_stated_range_and_their_type() {
    let scale = |replicas: &str| {
        codes(kind("k8s.scale"), &format!("namespace: x\ntarget: deployment/a\nreplicas: {replicas}\n"))
    };
    assert!(scale("2147483647").is_empty());
    assert_eq!(scale("2147483648")[0].1, "`with.replicas` must be at most 2147483647, found 2147483648");
    assert_eq!(
        scale("{ deployment/a: -1 }")[0].1,
        "`with.replicas.deployment/a` must be at least 0, found -1"
    );
    let restore = |jobs: &str| codes(kind("pg.restore"), &format!("dump: d\ndatabase: db\njobs: {jobs}\n"));
    assert_eq!(restore("0")[0].1, "`with.jobs` must be at least 1, found 0");
    // Beyond u32, where decoding at run time would fail.
    assert_eq!(restore("4294967296")[0].1, "`with.jobs` must be at most 4294967295, found 4294967296");
    let fetch = codes(kind("s3.fetch"), "bucket: b\nkey: k\nparallel: 17\n");
    assert_eq!(fetch[0].1, "`with.parallel` must be at most 16, found 17");
}

#[test]
fn enum_values_get_a_suggestion() {
    let problems =
        check(&with("bucket: b\nkey: k\nchecksum: sidcar\n"), &kind("s3.fetch").parameters_schema(), "with");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].help.as_deref(), Some("did you mean `sidecar`?"));
}

#[test]
fn templates_match_any_type_and_are_coerced_once_rendered() {
    assert!(
        codes(kind("k8s.scale"), "namespace: x\nreplicas: \"{{steps.a.outputs.previous_replicas}}\"\n")
            .is_empty()
    );
    let schema = kind("k8s.scale").parameters_schema();
    let rendered = serde_json::json!({"namespace": "x", "replicas": "3", "wait": "false"});
    assert_eq!(
        coerce(rendered, &schema),
        serde_json::json!({"namespace": "x", "replicas": 3, "wait": false})
    );
    let per_workload = serde_json::json!({"namespace": "x", "replicas": {"deployment/a": 2}});
    assert_eq!(coerce(per_workload.clone(), &schema), per_workload);
}
