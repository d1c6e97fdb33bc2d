#!/usr/bin/env bash
# Benchmarks of dr-plan's execution engine (the results are in benches/ENGINE.md):
#
#   (a) throughput: a 1,000-step DAG of no-op steps (`sleep 0s`, then `exec true`),
#       timed end to end with `dr-plan run --yes`: loading and checking the plan, the
#       scheduler, and the journal, whose events are fsync'd once per scheduler turn
#       before anything acts on them (benches/journal_fsync.sh counts the fsyncs);
#   (b) scheduling overhead: three parallel chains of `sleep` steps whose critical path
#       is known; the makespan (the journal's first to last timestamp) divided by the
#       critical path should stay at or below 1.02.
#
# Both run twice: with the state directory on disk (a temporary directory, what a real
# run pays: the journal waits for fsync) and on tmpfs (/dev/shm, where fsync is
# free), which isolates the engine's own cost from the storage's.
#
# Usage: benches/engine.sh [REPETITIONS]   (default 3; the best and the worst are shown)
# Builds with `cargo build --release` (honours CARGO_TARGET_DIR). Needs bash and GNU date.
set -euo pipefail

repetitions="${1:-3}"
repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repository_root/target}"

say() { printf '%s\n' "$*"; }

say "building dr-plan --release ..."
(cd "$repository_root" && cargo build --release --quiet)
binary="$target_dir/release/dr-plan"

work="$(mktemp -d)"
locations=("disk:$work")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    memory="$(mktemp -d /dev/shm/dr-plan-bench.XXXXXX)"
    locations+=("tmpfs:$memory")
else
    memory=""
fi
trap 'rm -rf "$work" ${memory:+"$memory"}' EXIT

now_nanoseconds() { date +%s%N; }

# Milliseconds since the epoch of an RFC 3339 time written by the journal.
journal_time_milliseconds() { date -d "$1" +%s%3N; }

# The `at` of a journal line.
at_of() { sed -E 's/^\{"at":"([^"]+)".*/\1/' <<<"$1"; }

# --- (a) 1,000 no-op steps -------------------------------------------------------------
# The plan: benches/wide_dag.sh (50 layers of 20 steps, each needing two of the layer before).
# shellcheck source=benches/wide_dag.sh
source "$repository_root/benches/wide_dag.sh"

# Prints "wall_seconds records" for one run of PLAN with a fresh state directory.
time_run() {
    local plan="$1" state="$2"; shift 2
    rm -rf "$state"
    local started finished journal
    started=$(now_nanoseconds)
    "$binary" run "$plan" --yes --state-dir "$state" "$@" </dev/null >/dev/null 2>"$work/stderr" || {
        cat "$work/stderr" >&2
        exit 1
    }
    finished=$(now_nanoseconds)
    journal=$(ls "$state"/runs/*/journal.jsonl)
    printf '%s %s\n' "$(((finished - started) / 1000000))" "$(wc -l <"$journal")"
}

say ""
say "(a) 1,000-step DAG of no-op steps: \`dr-plan run PLAN --yes --concurrency 20\`"
for kind in sleep exec; do
    plan="$work/bench-$kind.yaml"
    generate_wide_dag "$kind" "$plan"
    started=$(now_nanoseconds)
    "$binary" validate "$plan" >/dev/null
    say "  $kind steps (\`dr-plan validate\` alone: $((($(now_nanoseconds) - started) / 1000000)) ms):"
    for location in "${locations[@]}"; do
        results=()
        for ((repetition = 1; repetition <= repetitions; repetition++)); do
            results+=("$(time_run "$plan" "${location#*:}/state-$kind" --concurrency 20)")
        done
        sorted=$(printf '%s\n' "${results[@]}" | sort -n)
        best=$(head -1 <<<"$sorted")
        worst=$(tail -1 <<<"$sorted")
        best_milliseconds=${best% *}
        say "    state on ${location%%:*}: best ${best_milliseconds} ms, worst ${worst% *} ms over $repetitions runs;" \
            "${best#* } journal records; $((1000 * 1000 / best_milliseconds)) steps/s"
    done
done

# --- (b) makespan against the critical path --------------------------------------------
# chain a: 1s → 0.5s → 0.5s → 0.5s (2.5s); chain b: 0.5s → 1s (1.5s); chain c: 2s;
# then `join` (0.25s) needs the three ends. Critical path: a1..a4 + join = 2.75s.
critical_path_milliseconds=2750
cat >"$work/makespan.yaml" <<'EOF'
version: 1
name: bench-makespan
steps:
  - { id: a1, kind: sleep, with: { duration: 1s } }
  - { id: a2, kind: sleep, needs: [a1], with: { duration: 500ms } }
  - { id: a3, kind: sleep, needs: [a2], with: { duration: 500ms } }
  - { id: a4, kind: sleep, needs: [a3], with: { duration: 500ms } }
  - { id: b1, kind: sleep, with: { duration: 500ms } }
  - { id: b2, kind: sleep, needs: [b1], with: { duration: 1s } }
  - { id: c1, kind: sleep, with: { duration: 2s } }
  - { id: join, kind: sleep, needs: [a4, b2, c1], with: { duration: 250ms } }
EOF

say ""
say "(b) makespan / critical path (${critical_path_milliseconds} ms): \`dr-plan run PLAN --yes\`"
for location in "${locations[@]}"; do
    ratios=()
    makespans=()
    for ((repetition = 1; repetition <= repetitions; repetition++)); do
        state="${location#*:}/state-makespan"
        rm -rf "$state"
        "$binary" run "$work/makespan.yaml" --yes --state-dir "$state" </dev/null >/dev/null 2>&1
        journal=$(ls "$state"/runs/*/journal.jsonl)
        first=$(journal_time_milliseconds "$(at_of "$(head -1 "$journal")")")
        last=$(journal_time_milliseconds "$(at_of "$(tail -1 "$journal")")")
        makespan=$((last - first))
        # Four decimals with integer arithmetic.
        ratio_ten_thousandths=$((makespan * 10000 / critical_path_milliseconds))
        ratios+=("$(printf '%d.%04d' $((ratio_ten_thousandths / 10000)) $((ratio_ten_thousandths % 10000)))")
        makespans+=("$makespan")
    done
    sorted=$(printf '%s\n' "${ratios[@]}" | sort -n)
    worst_ratio=$(tail -1 <<<"$sorted")
    verdict="within"
    if [ "$(printf '%s\n1.0200\n' "$worst_ratio" | sort -n | tail -1)" != "1.0200" ]; then verdict="ABOVE"; fi
    say "  state on ${location%%:*}: makespans ${makespans[*]} ms; ratios ${ratios[*]};" \
        "median $(sed -n "$(((repetitions + 1) / 2))p" <<<"$sorted"), worst $worst_ratio: $verdict the 1.02 goal"
done
