#!/usr/bin/env bash
# The two state backends, in one run, on the same plan (results in benches/ENGINE.md):
#
#   1,000 no-op steps (`sleep 0s`; 50 layers of 20, each step needing two of the layer
#   before), `dr-plan run PLAN --yes --concurrency 20`, with the state
#     - in a local directory on disk (every journal sync is one fdatasync), and
#     - in S3: moto's server on 127.0.0.1 (every journal sync is one PUT with
#       If-None-Match: *, and the lock is renewed with If-Match).
#   For each: the wall time, the journal events, and the syncs (fdatasync calls counted
#   with strace when it is installed, journal objects for S3).
#
# Usage: benches/state_backends.sh [REPETITIONS]   (default 3; best and worst shown)
# Needs moto_server (scripts/install-test-deps.sh puts it under
# ~/.cache/dr-plan-test-tools/bin) and curl; builds with `cargo build --release`.
set -euo pipefail

repetitions="${1:-3}"
repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repository_root/target}"
tools="${DR_PLAN_TEST_TOOLS:-$HOME/.cache/dr-plan-test-tools}"
moto_server="$(command -v moto_server || echo "$tools/bin/moto_server")"
[ -x "$moto_server" ] || { echo "moto_server not found: run scripts/install-test-deps.sh" >&2; exit 1; }

say() { printf '%s\n' "$*"; }
now_nanoseconds() { date +%s%N; }

say "building dr-plan --release ..."
(cd "$repository_root" && cargo build --release --quiet)
binary="$target_dir/release/dr-plan"

work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
"$moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
done
curl -s -X PUT -o /dev/null "http://127.0.0.1:$port/bench-state"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$port"

plan="$work/wide.yaml"
{
    printf 'version: 1\nname: bench-state\nsteps:\n'
    for ((layer = 0; layer < 50; layer++)); do
        for ((position = 0; position < 20; position++)); do
            id=$(printf 's%02d-%02d' "$layer" "$position")
            if ((layer == 0)); then
                printf '  - { id: %s, kind: sleep, with: { duration: 0s } }\n' "$id"
            else
                printf '  - { id: %s, kind: sleep, needs: [%s, %s], with: { duration: 0s } }\n' "$id" \
                    "$(printf 's%02d-%02d' $((layer - 1)) "$position")" \
                    "$(printf 's%02d-%02d' $((layer - 1)) $(((position + 7) % 20)))"
            fi
        done
    done
} >"$plan"

# Prints "milliseconds events syncs" for one run with the state at $1; with $2 = count,
# a local run is made under strace to count fdatasync (its time is then not comparable).
run_once() {
    local state="$1" started finished events syncs
    local strace=()
    if [ "${2:-}" = count ] && command -v strace >/dev/null && [[ "$state" != s3://* ]]; then
        strace=(strace -f -c -e trace=fdatasync -o "$work/strace.txt")
    fi
    started=$(now_nanoseconds)
    "${strace[@]}" "$binary" run "$plan" --yes --concurrency 20 --state-dir "$state" </dev/null >/dev/null 2>"$work/stderr" || {
        cat "$work/stderr" >&2
        exit 1
    }
    finished=$(now_nanoseconds)
    if [[ "$state" == s3://* ]]; then
        local listing
        listing=$(curl -s "http://127.0.0.1:$port/bench-state?list-type=2&prefix=${state#s3://bench-state/}/runs/&max-keys=100000")
        syncs=$(grep -o '<Key>[^<]*/journal/[^<]*</Key>' <<<"$listing" | wc -l)
        events="$("$binary" verify "$(sed -n 's/.*run \([^ ]*\) succeeded.*/\1/p' "$work/stderr" | head -1)" \
            --state-dir "$state" | sed -n 's/.*intact, \([0-9]*\) events.*/\1/p') events"
    else
        events="$(wc -l <"$(ls "$state"/runs/*/journal.jsonl)") events"
        if [ ${#strace[@]} -gt 0 ]; then
            syncs=$(awk '/fdatasync/ { print $4 }' "$work/strace.txt")
        else
            syncs="(not counted)"
        fi
    fi
    printf '%s %s, %s syncs\n' "$(((finished - started) / 1000000))" "$events" "$syncs"
}

say ""
say "1,000 no-op steps, \`dr-plan run PLAN --yes --concurrency 20\`:"
for backend in "disk:$work/state" "s3:s3://bench-state"; do
    case "$backend" in
        disk:*) rm -rf "${backend#disk:}"; counted="$(run_once "${backend#disk:}" count)" ;;
        s3:*) counted="$(run_once "${backend#s3:}/counted")" ;;
    esac
    say "  state on ${backend%%:*}, counted: ${counted#* }"
    results=()
    for ((repetition = 1; repetition <= repetitions; repetition++)); do
        case "$backend" in
            disk:*) rm -rf "${backend#disk:}"; results+=("$(run_once "${backend#disk:}")") ;;
            s3:*) results+=("$(run_once "${backend#s3:}/r$repetition")") ;;
        esac
    done
    sorted=$(printf '%s\n' "${results[@]}" | sort -n)
    say "  state on ${backend%%:*}: best $(head -1 <<<"$sorted" | cut -d' ' -f1) ms, worst $(tail -1 <<<"$sorted" | cut -d' ' -f1) ms over $repetitions runs"
done
