#!/usr/bin/env bash
# dr-plan's test command: installs the test servers and tools when missing, puts them
# on PATH, then runs every test target in one pass. Extra arguments go to `cargo test`,
# e.g. `scripts/test.sh --test it servers::` or `scripts/test.sh postgres`.
set -euo pipefail

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repository_root"

bash scripts/install-test-deps.sh

tools_dir="${DR_PLAN_TEST_TOOLS:-$HOME/.cache/dr-plan-test-tools}"
# s3s-fs, and links to moto_server and check-jsonschema in the venv (the venv's own
# bin/ stays off PATH so `python3` remains the system one).
export PATH="$tools_dir/bin:$PATH"
export DR_PLAN_TEST_TOOLS="$tools_dir"

# No `--` here: arguments may be cargo options (`--test it`) or a test filter.
exec cargo test --all-targets --locked "$@"
