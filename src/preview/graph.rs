//! `dr-plan graph`: the plan's DAG as Mermaid or Graphviz DOT, with a legend. A reviewer
//! sees at a glance which steps destroy data, wait for a person, may not run (`when`),
//! let the run go on when they fail, and are undone on abort.

use std::fmt::Write;

use crate::lang::plan::{Plan, Step};
use crate::lang::spec::OnFailure;

/// What the graph marks on a step.
struct Marks {
    destructive: bool,
    approval: bool,
    when: Option<String>,
    continues: bool,
    undo: bool,
}

impl Marks {
    fn of(plan: &Plan, step: &Step) -> Marks {
        Marks {
            destructive: step.kind.is_destructive(&step.with.to_json()),
            approval: step.kind.asks_approval(),
            when: plan.spec_of(step).when.as_ref().map(|when| when.value.clone()),
            continues: step.on_failure == OnFailure::Continue,
            undo: step.undo,
        }
    }

    /// The extra lines of the step's box, in legend order.
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.destructive {
            lines.push("⚠ destructive".to_owned());
        }
        if self.approval {
            lines.push("✋ waits for approval".to_owned());
        }
        if let Some(when) = &self.when {
            lines.push(format!("? when {when}"));
        }
        if self.continues {
            lines.push("↷ on failure: continue".to_owned());
        }
        if self.undo {
            lines.push("↩ undone on abort".to_owned());
        }
        lines
    }
}

/// The legend's entries: mark, class (style) name, meaning.
const LEGEND: [(&str, &str, &str); 5] = [
    ("⚠ destructive", "destructive", "changes or removes data"),
    ("✋ waits for approval", "approval", "an operator must approve"),
    ("? when", "conditional", "runs only when its condition is true"),
    ("↷ on failure: continue", "continues", "its failure does not stop the run"),
    ("↩ undone on abort", "undo", "compensated when the run aborts"),
];

/// A Mermaid flowchart with a legend; destructive steps are outlined in red, approvals
/// filled, conditional steps dashed.
#[must_use]
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let mut classes: Vec<(&str, Vec<String>)> =
        LEGEND.iter().map(|(_, class, _)| (*class, Vec::new())).collect();
    for (index, step) in plan.steps.iter().enumerate() {
        let marks = Marks::of(plan, step);
        let mut label = format!("{}<br/><small>{}</small>", escape_mermaid(&step.id), step.kind.name());
        for line in marks.lines() {
            let _ = write!(label, "<br/><small>{}</small>", escape_mermaid(&line));
        }
        let _ = writeln!(out, "  s{index}[\"{label}\"]");
        let flags = [marks.destructive, marks.approval, marks.when.is_some(), marks.continues, marks.undo];
        for ((_, members), flag) in classes.iter_mut().zip(flags) {
            if flag {
                members.push(format!("s{index}"));
            }
        }
    }
    for (index, step) in plan.steps.iter().enumerate() {
        for need in &step.needs {
            let _ = writeln!(out, "  s{need} --> s{index}");
        }
    }
    out.push_str("  subgraph legend [Legend]\n");
    for (mark, class, meaning) in LEGEND {
        let _ = writeln!(out, "    legend_{class}[\"{}: {meaning}\"]", escape_mermaid(mark));
    }
    out.push_str("  end\n");
    out.push_str("  classDef destructive stroke:#d33,stroke-width:2px\n");
    out.push_str("  classDef approval fill:#fff3cd\n");
    out.push_str("  classDef conditional stroke-dasharray:5 5\n");
    out.push_str("  classDef continues color:#555\n");
    out.push_str("  classDef undo font-style:italic\n");
    for (class, mut members) in classes {
        members.push(format!("legend_{class}"));
        let _ = writeln!(out, "  class {} {class}", members.join(","));
    }
    out
}

fn escape_mermaid(text: &str) -> String {
    text.replace('"', "#quot;")
}

/// Graphviz attributes of a step's box.
fn dot_attributes(marks: &Marks) -> String {
    let mut attributes = String::new();
    let mut styles = Vec::new();
    if marks.destructive {
        attributes.push_str(", color=red, penwidth=2");
    }
    if marks.approval {
        styles.push("filled");
        attributes.push_str(", fillcolor=\"#fff3cd\"");
    }
    if marks.when.is_some() {
        styles.push("dashed");
    }
    if !styles.is_empty() {
        let _ = write!(attributes, ", style=\"{}\"", styles.join(","));
    }
    attributes
}

fn escape_dot(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Graphviz digraph with a legend; destructive steps are red, approvals filled,
/// conditional steps dashed.
#[must_use]
pub fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n",
        escape_dot(plan.name())
    );
    for step in &plan.steps {
        let marks = Marks::of(plan, step);
        let mut label = format!("{}\\n{}", escape_dot(&step.id), step.kind.name());
        for line in marks.lines() {
            let _ = write!(label, "\\n{}", escape_dot(&line));
        }
        let _ =
            writeln!(out, "  \"{}\" [label=\"{label}\"{}];", escape_dot(&step.id), dot_attributes(&marks));
    }
    for step in &plan.steps {
        for &need in &step.needs {
            let _ =
                writeln!(out, "  \"{}\" -> \"{}\";", escape_dot(&plan.steps[need].id), escape_dot(&step.id));
        }
    }
    out.push_str("  subgraph cluster_legend {\n    label=\"Legend\";\n");
    for (mark, class, meaning) in LEGEND {
        let marks = Marks {
            destructive: class == "destructive",
            approval: class == "approval",
            when: (class == "conditional").then(String::new),
            continues: class == "continues",
            undo: class == "undo",
        };
        let _ = writeln!(
            out,
            "    \"legend_{class}\" [label=\"{}: {meaning}\"{}];",
            escape_dot(mark),
            dot_attributes(&marks)
        );
    }
    out.push_str("  }\n}\n");
    out
}
