//! Exit codes, as documented in the README and `dr-plan --help`.

/// Success.
pub const SUCCESS: i32 = 0;
/// A step failed or the run was aborted; `verify`: the journal does not match its chain.
pub const FAILED: i32 = 1;
/// Invalid plan or usage.
pub const INVALID: i32 = 2;
/// Blocked: lock held, approval or start confirmation needed without a terminal, resume
/// needs a decision.
pub const BLOCKED: i32 = 3;
/// Interrupted by the operator; the run is resumable.
pub const INTERRUPTED: i32 = 130;

/// The table printed in `--help`.
pub const HELP: &str = "Exit codes:
  0    success
  1    a step failed or the run was aborted; verify: the journal does not match
       its hash chain
  2    invalid plan or usage
  3    blocked: lock held, approval or confirmation needed without a terminal,
       resume needs a decision
  130  interrupted by the operator (the run is resumable)";
