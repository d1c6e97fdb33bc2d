//! `dr-plan graph`: the plan's DAG as Mermaid or Graphviz DOT.

use std::fmt::Write;

use crate::plan::Plan;

/// A Mermaid flowchart; destructive steps are outlined in red.
#[must_use]
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    for (index, step) in plan.steps.iter().enumerate() {
        let class = if step.kind.is_destructive(&step.with.to_json()) { ":::destructive" } else { "" };
        let _ = writeln!(
            out,
            "  s{index}[\"{}<br/><small>{}</small>\"]{class}",
            escape_mermaid(&step.id),
            step.kind.name()
        );
    }
    for (index, step) in plan.steps.iter().enumerate() {
        for need in &step.needs {
            let _ = writeln!(out, "  s{need} --> s{index}");
        }
    }
    out.push_str("  classDef destructive stroke:#d33,stroke-width:2px\n");
    out
}

fn escape_mermaid(text: &str) -> String {
    text.replace('"', "#quot;")
}

/// A Graphviz digraph; destructive steps are red.
#[must_use]
pub fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n",
        plan.name()
    );
    for step in &plan.steps {
        let color = if step.kind.is_destructive(&step.with.to_json()) { ", color=red" } else { "" };
        let _ = writeln!(out, "  \"{}\" [label=\"{}\\n{}\"{color}];", step.id, step.id, step.kind.name());
    }
    for step in &plan.steps {
        for &need in &step.needs {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", plan.steps[need].id, step.id);
        }
    }
    out.push_str("}\n");
    out
}
