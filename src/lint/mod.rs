//! `dr-plan lint`: DR-safety rules on top of validation. Each rule has a stable code
//! (`DRP001`...), a kebab-case name, and a section in `docs/lint.md` that says why it
//! matters in a real recovery and how to fix it.
//!
//! The rules read only a validated [`Plan`]: a plan that does not validate gets its
//! validation errors instead, so lint never guesses about a broken graph.

use std::path::Path;

use crate::lang::diagnostic::{Diagnostic, Severity};
use crate::lang::plan::Plan;

mod facts;
pub mod format;
mod rules;
mod secrets;
mod shell;

/// A DR-safety rule. The numbering is stable: codes are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// `DRP001`: a destructive step consumes data nobody verified.
    UnverifiedInput,
    /// `DRP002`: a `pg.restore` that drops data with no `pg.dump` before it.
    RestoreWithoutSafetyBackup,
    /// `DRP003`: no `objectives.rto`.
    NoRto,
    /// `DRP004`: the predicted critical path is longer than the RTO.
    RtoExceeded,
    /// `DRP005`: a secret written in the plan file.
    LiteralSecret,
    /// `DRP006`: a DNS switch with no health check of the new target upstream.
    DnsWithoutHealthCheck,
    /// `DRP007`: a Route53 health check `disabled` where `inverted` is meant.
    HealthCheckDisabled,
    /// `DRP008`: a var, input or secret no template uses.
    Unused,
    /// `DRP009`: destructive steps and no verification step at all.
    NoVerification,
    /// `DRP010`: an `s3.fetch` with `checksum: none`.
    ChecksumDisabled,
    /// `DRP011`: an `exec` step with a `with.undo` command that never runs (no `undo: true`).
    UndoCommandIgnored,
    /// `DRP012`: a template interpolated into the script of `sh -c`.
    TemplateInShellScript,
    /// `DRP013`: a database swapped in with no verification of it upstream.
    SwapWithoutCheck,
    /// `DRP014`: the state bucket is in the region the plan fails away from.
    StateInFailureDomain,
}

impl Rule {
    /// Every rule, in code order.
    pub const ALL: [Rule; 14] = [
        Rule::UnverifiedInput,
        Rule::RestoreWithoutSafetyBackup,
        Rule::NoRto,
        Rule::RtoExceeded,
        Rule::LiteralSecret,
        Rule::DnsWithoutHealthCheck,
        Rule::HealthCheckDisabled,
        Rule::Unused,
        Rule::NoVerification,
        Rule::ChecksumDisabled,
        Rule::UndoCommandIgnored,
        Rule::TemplateInShellScript,
        Rule::SwapWithoutCheck,
        Rule::StateInFailureDomain,
    ];

    /// The stable code, `DRP001`...
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Rule::UnverifiedInput => "DRP001",
            Rule::RestoreWithoutSafetyBackup => "DRP002",
            Rule::NoRto => "DRP003",
            Rule::RtoExceeded => "DRP004",
            Rule::LiteralSecret => "DRP005",
            Rule::DnsWithoutHealthCheck => "DRP006",
            Rule::HealthCheckDisabled => "DRP007",
            Rule::Unused => "DRP008",
            Rule::NoVerification => "DRP009",
            Rule::ChecksumDisabled => "DRP010",
            Rule::UndoCommandIgnored => "DRP011",
            Rule::TemplateInShellScript => "DRP012",
            Rule::SwapWithoutCheck => "DRP013",
            Rule::StateInFailureDomain => "DRP014",
        }
    }

    /// The kebab-case name, `unverified-input`...
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Rule::UnverifiedInput => "unverified-input",
            Rule::RestoreWithoutSafetyBackup => "restore-without-safety-backup",
            Rule::NoRto => "no-rto",
            Rule::RtoExceeded => "rto-exceeded",
            Rule::LiteralSecret => "literal-secret",
            Rule::DnsWithoutHealthCheck => "dns-without-health-check",
            Rule::HealthCheckDisabled => "health-check-disabled",
            Rule::Unused => "unused",
            Rule::NoVerification => "no-verification",
            Rule::ChecksumDisabled => "checksum-disabled",
            Rule::UndoCommandIgnored => "undo-command-ignored",
            Rule::TemplateInShellScript => "template-in-shell-script",
            Rule::SwapWithoutCheck => "swap-without-check",
            Rule::StateInFailureDomain => "state-in-failure-domain",
        }
    }

    /// One line: what the rule finds.
    #[must_use]
    pub fn summary(self) -> &'static str {
        match self {
            Rule::UnverifiedInput => "A destructive step consumes data that no step of the plan verified.",
            Rule::RestoreWithoutSafetyBackup => {
                "A pg.restore with clean (or a pg.swap with keep_previous: false) has no pg.dump of the target upstream."
            }
            Rule::NoRto => "The plan has no objectives.rto.",
            Rule::RtoExceeded => "The predicted critical path is longer than objectives.rto.",
            Rule::LiteralSecret => "A secret is written literally in the plan file.",
            Rule::DnsWithoutHealthCheck => {
                "A route53.change has no http.check or k8s.wait of the new target upstream."
            }
            Rule::HealthCheckDisabled => {
                "A Route53 health check is disabled, which Route53 treats as healthy: it does not fail over."
            }
            Rule::Unused => "A var, input or secret is declared but no template uses it.",
            Rule::NoVerification => "The plan has destructive steps but no step that verifies the result.",
            Rule::ChecksumDisabled => "An s3.fetch does not verify the object's checksum.",
            Rule::UndoCommandIgnored => {
                "An exec step gives a with.undo command but no undo: true, so the command never runs."
            }
            Rule::TemplateInShellScript => {
                "A template is interpolated into the script of a shell (sh -c), which reads its value as code."
            }
            Rule::SwapWithoutCheck => "A pg.swap puts a database in place that no pg.query upstream checked.",
            Rule::StateInFailureDomain => {
                "The state bucket (--state-dir s3://...) names the region the plan fails away from."
            }
        }
    }

    /// The anchor of the rule's section in `docs/lint.md` (`drp001-unverified-input`).
    #[must_use]
    pub fn anchor(self) -> String {
        format!("{}-{}", self.code().to_ascii_lowercase(), self.name())
    }

    /// The rule with this code.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.code() == code)
    }
}

/// Runs every DR-safety rule on a validated plan. Findings are warnings, sorted by
/// position; each is labelled on the text it is about and says what to do.
#[must_use]
pub fn lint(plan: &Plan) -> Vec<Diagnostic> {
    lint_with_state(plan, None)
}

/// The findings about where runs of the plan are kept (DRP014) alone: what `run` and
/// `drill` say when they start, without running every other rule.
#[must_use]
pub fn state_findings(plan: &Plan, state_dir: &str) -> Vec<Diagnostic> {
    rules::state_in_failure_domain(plan, state_dir)
}

/// [`lint`], plus the rules that need to know where runs of the plan are kept
/// (`--state-dir`, `DR_PLAN_STATE_DIR`).
#[must_use]
pub fn lint_with_state(plan: &Plan, state_dir: Option<&str>) -> Vec<Diagnostic> {
    let mut found = rules::check(plan);
    if let Some(state_dir) = state_dir {
        found.extend(rules::state_in_failure_domain(plan, state_dir));
    }
    found.sort_by_key(Diagnostic::sort_key);
    found
}

/// What lint found in one file.
#[derive(Clone, Debug)]
pub struct FileResult {
    /// The path as given (or as found under a directory).
    pub path: String,
    /// Validation errors when the plan is invalid, else the lint warnings.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads and validates `path`, then lints it when it is valid.
#[must_use]
pub fn lint_file(path: &Path, state_dir: Option<&str>) -> FileResult {
    let diagnostics = match crate::kinds::load_plan(path) {
        Ok(plan) => lint_with_state(&plan, state_dir),
        Err(problems) => problems,
    };
    FileResult { path: path.display().to_string(), diagnostics }
}

/// Counts over a lint run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Diagnostics of severity error.
    pub errors: usize,
    /// Diagnostics of severity warning.
    pub warnings: usize,
    /// Files linted (with or without findings).
    pub files: usize,
}

impl Summary {
    /// Counts `results`.
    #[must_use]
    pub fn of(results: &[FileResult]) -> Summary {
        let all = || results.iter().flat_map(|result| &result.diagnostics);
        Summary {
            errors: all().filter(|diagnostic| diagnostic.severity == Severity::Error).count(),
            warnings: all().filter(|diagnostic| diagnostic.severity == Severity::Warning).count(),
            files: results.len(),
        }
    }

    /// Whether the run fails: any error, or any warning when warnings are denied
    /// (`--deny warnings`).
    #[must_use]
    pub fn fails(self, deny_warnings: bool) -> bool {
        self.errors > 0 || (deny_warnings && self.warnings > 0)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |count: usize, word: &str| {
            if count == 1 { format!("1 {word}") } else { format!("{count} {word}s") }
        };
        write!(
            formatter,
            "{}, {} in {}",
            plural(self.errors, "error"),
            plural(self.warnings, "warning"),
            plural(self.files, "file")
        )
    }
}
