//! DRP012: a template interpolated into the script of a shell
//! (`command: [sh, -c, "curl {{inputs.url}}"]`). The shell parses the rendered value as
//! code, so a quote, `;`, `$(...)` or a space in an input, a var overridden on the
//! command line or a previous step's output changes what runs. Passed as a positional
//! argument (`[sh, -c, 'curl "$1"', sh, "{{inputs.url}}"]`) or through `env`, the
//! value stays one word whatever it holds.

use super::Rule;
use super::facts::Facts;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::node::{Node, Value};
use crate::lang::source::Syntax;
use crate::lang::template::{Template, contains_expression};

/// Programs that read their `-c` argument as shell code.
const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "ash"];

/// `run.` fields that dr-plan makes itself and that hold no shell syntax: a checked
/// run id, `true`/`false` and a timestamp. `run.dir` and `run.plan` are paths the
/// operator chose, so they count.
const HARMLESS_RUN_FIELDS: &[&str] = &["id", "drill", "started_at"];

/// DRP012: one warning per shell script holding a template, labelled on its first
/// reference (further ones as secondary labels).
pub(super) fn template_in_shell_script(facts: &Facts<'_>, found: &mut Vec<Diagnostic>) {
    let toml_syntax = facts.file.syntax() == Some(Syntax::Toml);
    for index in 0..facts.plan.steps.len() {
        for parameter in facts.kind(index).info().argv_parameters {
            let Some(Node { value: Value::List(argv), .. }) = facts.parameter(index, parameter) else {
                continue;
            };
            let Some((shell, script)) = shell_script(argv) else { continue };
            let Some(text) = script.as_str().filter(|text| contains_expression(text)) else { continue };
            let Ok(template) = Template::parse(text) else { continue };
            let interpolated: Vec<_> = template
                .references()
                .iter()
                .filter(|reference| {
                    !matches!(reference.path.as_slice(),
                        [root, field, ..] if root == "run" && HARMLESS_RUN_FIELDS.contains(&field.as_str()))
                })
                .collect();
            let Some(first) = interpolated.first() else { continue };
            let written = first.path.join(".");
            let id = facts.id(index);
            let example = if toml_syntax {
                format!("[\"{shell}\", \"-c\", '... \"$1\" ...', \"{shell}\", \"{{{{{written}}}}}\"]")
            } else {
                format!("[{shell}, -c, '... \"$1\" ...', {shell}, \"{{{{{written}}}}}\"]")
            };
            let mut diagnostic = facts
                .warning(
                    Rule::TemplateInShellScript,
                    facts.locate(script, text, &first.range),
                    format!("step `{id}` pastes `{{{{{written}}}}}` into the script of `{shell} -c`"),
                )
                .with_label("parsed as shell code: a space, quote, `;` or `$(...)` in it changes the command")
                .with_help(format!(
                    "pass it as an argument and quote it: {example} (the `{shell}` after the script is `$0`), \
                     or set it in `env` and write \"$NAME\""
                ));
            for other in &interpolated[1..] {
                diagnostic =
                    diagnostic.with_secondary(facts.locate(script, text, &other.range), "interpolated too");
            }
            found.push(diagnostic);
        }
    }
}

/// The shell's name and the script node of an argv that runs `SHELL [OPTIONS] -c SCRIPT`
/// (`-c` may be grouped: `-ec`, `-euc`; `-o NAME` takes a word).
fn shell_script(argv: &[Node]) -> Option<(&str, &Node)> {
    let program = argv.first()?.as_str()?;
    let shell = program.rsplit('/').next().unwrap_or(program);
    if !SHELLS.contains(&shell) {
        return None;
    }
    let mut command_string = false;
    let mut arguments = argv[1..].iter();
    while let Some(argument) = arguments.next() {
        let text = argument.as_str()?;
        if text == "-o" || text == "+o" {
            arguments.next();
        } else if text == "--" {
            continue;
        } else if let Some(flags) = text.strip_prefix('-').or_else(|| text.strip_prefix('+')) {
            if !text.starts_with("--") && flags.contains('c') {
                command_string = true;
            }
        } else {
            // The first operand: the script with `-c`, else a script file.
            return command_string.then_some((shell, argument));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::source::Span;

    fn argv(words: &[&str]) -> Vec<Node> {
        words.iter().map(|word| Node::new(Value::String((*word).to_owned()), Span::new(0, 0))).collect()
    }

    fn script(words: &[&str]) -> Option<String> {
        let argv = argv(words);
        shell_script(&argv).and_then(|(_, node)| node.as_str().map(str::to_owned))
    }

    #[test]
    fn finds_the_script_of_a_shell_called_with_c() {
        assert_eq!(script(&["sh", "-c", "echo"]).as_deref(), Some("echo"));
        assert_eq!(script(&["/bin/bash", "-euc", "echo"]).as_deref(), Some("echo"));
        assert_eq!(script(&["bash", "-o", "pipefail", "-c", "echo"]).as_deref(), Some("echo"));
        assert_eq!(script(&["bash", "-e", "-c", "echo", "bash", "x"]).as_deref(), Some("echo"));
    }

    #[test]
    fn other_programs_and_script_files_are_not_scripts() {
        assert_eq!(script(&["sh", "restore.sh", "-c"]), None);
        assert_eq!(script(&["python3", "-c", "print()"]), None);
        assert_eq!(script(&["bash", "--norc"]), None);
        assert_eq!(script(&["sh"]), None);
    }
}
