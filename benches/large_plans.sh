#!/usr/bin/env bash
# Validation of large plans must stay linear (the results are in benches/README.md):
#
#   chain.yaml  20,000 `exec` steps, each needing the previous one and reading its
#               `stdout` output through a template (graph, ancestors, references);
#   keys.yaml   100,000 `vars` keys, the last step reading the last of them (a map of
#               many keys: loading, names, reference lookups).
#
# Each is timed with `dr-plan validate` (wall time, and peak RSS through
# `/usr/bin/time -v` when it exists, else the high-water mark VmHWM read from /proc
# while the process runs).
#
# Usage: benches/large_plans.sh [STEPS] [KEYS]   (default 20000 100000)
#   DR_PLAN=path/to/dr-plan  time that binary (e.g. an older build, for a before/after)
#                            instead of building `cargo build --release`;
#   TIMEOUT=SECONDS          give up on one validation after this long (default 300).
# Honours CARGO_TARGET_DIR. Needs bash, GNU date and coreutils `timeout`.
set -euo pipefail

steps="${1:-20000}"
keys="${2:-100000}"
limit="${TIMEOUT:-300}"
repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repository_root/target}"

if [ -n "${DR_PLAN:-}" ]; then
    binary="$DR_PLAN"
else
    echo "building dr-plan --release ..."
    (cd "$repository_root" && cargo build --release --quiet)
    binary="$target_dir/release/dr-plan"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The chain: step s1 has no needs; every later step needs the one before it and
# echoes its stdout, so every template reference is checked against `needs`.
{
    printf 'version: 1\nname: large-chain\nsteps:\n'
    printf '  - { id: s1, kind: exec, with: { command: [echo, start] } }\n'
    for ((index = 2; index <= steps; index++)); do
        printf '  - { id: s%d, kind: exec, needs: [s%d], with: { command: [echo, "{{steps.s%d.outputs.stdout}}"] } }\n' \
            "$index" "$((index - 1))" "$((index - 1))"
    done
} >"$work/chain.yaml"

{
    printf 'version: 1\nname: large-map\nvars:\n'
    for ((index = 1; index <= keys; index++)); do
        printf '  key%d: value-%d\n' "$index" "$index"
    done
    printf 'steps:\n'
    printf '  - { id: read, kind: exec, with: { command: [echo, "{{vars.key%d}}"] } }\n' "$keys"
} >"$work/keys.yaml"

# Prints "<seconds> <peak RSS in MB>" of `dr-plan validate FILE`; fails when it does.
measure() {
    local file="$1" start end status peak
    start="$(date +%s%N)"
    if [ -x /usr/bin/time ]; then
        status=0
        /usr/bin/time -v -o "$work/time.txt" timeout "$limit" "$binary" validate "$file" \
            >/dev/null 2>"$work/stderr.txt" || status=$?
        peak="$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$work/time.txt")"
    else
        timeout "$limit" "$binary" validate "$file" >/dev/null 2>"$work/stderr.txt" &
        local watched=$! high=0 now child=""
        # `timeout` runs dr-plan as its child: follow that one. A run shorter than
        # the sampling interval may end unsampled.
        while kill -0 "$watched" 2>/dev/null; do
            [ -z "$child" ] && child="$(cat "/proc/$watched/task/$watched/children" 2>/dev/null | cut -d' ' -f1)"
            now="$(awk '/VmHWM/ { print $2 }' "/proc/${child:-$watched}/status" 2>/dev/null || true)"
            [ "${now:-0}" -gt "$high" ] && high="$now"
            sleep 0.01
        done
        status=0
        wait "$watched" || status=$?
        if [ "$high" -gt 0 ]; then peak="$((high / 1024))"; else peak="?"; fi
    fi
    end="$(date +%s%N)"
    if [ "$status" -ne 0 ]; then
        if [ "$status" -eq 124 ] || grep -q "Command exited with non-zero status 124" "$work/time.txt" 2>/dev/null; then
            echo "gave up after ${limit}s (peak ${peak} MB)"
            return 0
        fi
        echo "dr-plan validate $file failed (exit $status):" >&2
        cat "$work/stderr.txt" >&2
        return 1
    fi
    awk -v nanoseconds="$((end - start))" -v peak="$peak" \
        'BEGIN { printf "%.2f s, peak RSS %s MB\n", nanoseconds / 1e9, peak }'
}

echo "binary: $binary"
printf '%-40s %s\n' "chain of $steps steps ($(du -h "$work/chain.yaml" | cut -f1))" "$(measure "$work/chain.yaml")"
printf '%-40s %s\n' "map of $keys vars ($(du -h "$work/keys.yaml" | cut -f1))" "$(measure "$work/keys.yaml")"
