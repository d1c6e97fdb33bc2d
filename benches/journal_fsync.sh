#!/usr/bin/env bash
# How many fsyncs a run of 1,000 no-op steps costs, and its wall time (the results are
# in benches/ENGINE.md, "Group commit"). The plan is the 1,000-step DAG of
# benches/engine.sh (benches/wide_dag.sh: 50 layers × 20, `sleep 0s` or `exec true`),
# run with `dr-plan run PLAN --yes --concurrency 20`:
#
#   - fdatasync calls of one run, counted by `strace -f -c -e trace=fdatasync` (every
#     thread; the journal's, and the few of plan.snapshot and the lock);
#   - wall time of the whole process without strace, best and worst of REPETITIONS,
#     with the state directory on disk (a temporary directory: every fsync waits for the
#     device), on tmpfs (/dev/shm: fsync is free), and on disk with every fsync made
#     SLOW_FSYNC_MILLISECONDS (default 5) slower, which is what a slow disk or a network
#     volume costs: an LD_PRELOAD shim, compiled with `cc` when there is one, sleeps
#     before each fdatasync/fsync.
#
# strace -f stops every thread at each fork and exec, which slows `exec` steps down a
# lot and so changes how many of them finish within one fsync: its counts for `exec`
# are an upper bound; the `sleep` steps, which start no process, are barely affected.
#
# Usage: benches/journal_fsync.sh [BINARY...]
#   With no binary, builds this tree with `cargo build --release` (honours
#   CARGO_TARGET_DIR) and measures it. Given binaries are measured one after the other,
#   e.g. main's and a branch's: `benches/journal_fsync.sh /tmp/dr-plan-main target/release/dr-plan`.
#   REPETITIONS (environment, default 3): timed runs per binary, place and kind.
# Needs strace (Debian package `strace`), bash and GNU date.
set -euo pipefail

repetitions="${REPETITIONS:-3}"
repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/wide_dag.sh
source "$repository_root/benches/wide_dag.sh"

say() { printf '%s\n' "$*"; }

command -v strace >/dev/null || {
    say "strace is not installed (Debian: apt-get install strace)" >&2
    exit 1
}

binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
    say "building dr-plan --release ..."
    (cd "$repository_root" && cargo build --release --quiet)
    binaries=("${CARGO_TARGET_DIR:-$repository_root/target}/release/dr-plan")
fi

work="$(mktemp -d)"
locations=("disk:$work")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    memory="$(mktemp -d /dev/shm/dr-plan-bench.XXXXXX)"
    locations+=("tmpfs:$memory")
else
    memory=""
fi
trap 'rm -rf "$work" ${memory:+"$memory"}' EXIT

# A disk whose fsync takes SLOW_FSYNC_MILLISECONDS longer.
slow_milliseconds="${SLOW_FSYNC_MILLISECONDS:-5}"
preloads=()
if command -v cc >/dev/null; then
    cat >"$work/slow_fsync.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static void wait_like_a_slow_disk(void) {
    long milliseconds = atol(getenv("SLOW_FSYNC_MILLISECONDS"));
    struct timespec pause = {milliseconds / 1000, (milliseconds % 1000) * 1000000};
    nanosleep(&pause, 0);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_like_a_slow_disk();
    return real(fd);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_like_a_slow_disk();
    return real(fd);
}
C
    cc -shared -fPIC -O2 -o "$work/slow_fsync.so" "$work/slow_fsync.c" -ldl
    mkdir "$work/slow"
    locations+=("disk, fsync +${slow_milliseconds} ms:$work/slow")
    export SLOW_FSYNC_MILLISECONDS="$slow_milliseconds"
else
    say "no C compiler: the slow-disk rows are left out" >&2
fi

# The environment of a run in LOCATION: the shim for the slow disk.
environment_of() {
    case "$1" in
    *fsync*) printf 'LD_PRELOAD=%s\n' "$work/slow_fsync.so" ;;
    *) printf 'LD_PRELOAD=\n' ;;
    esac
}

now_nanoseconds() { date +%s%N; }

# Runs BINARY on PLAN with a fresh state directory STATE and the ENVIRONMENT (one
# NAME=VALUE), under the rest of the arguments as a prefix command (none, or strace);
# fails with its stderr.
run_plan() {
    local binary="$1" plan="$2" state="$3" environment="$4"
    shift 4
    rm -rf "$state"
    "$@" env "$environment" "$binary" run "$plan" --yes --state-dir "$state" --concurrency 20 \
        </dev/null >/dev/null 2>"$work/stderr" || {
        cat "$work/stderr" >&2
        exit 1
    }
}

# fdatasync calls of one run: the `calls` column of strace's summary.
count_fdatasync() {
    local binary="$1" plan="$2" state="$3" environment="$4"
    run_plan "$binary" "$plan" "$state" "$environment" strace -f -c -e trace=fdatasync -o "$work/strace"
    awk '$NF == "fdatasync" { print $4 }' "$work/strace"
}

for kind in sleep exec; do
    generate_wide_dag "$kind" "$work/bench-$kind.yaml"
done

say "1,000 no-op steps (50 layers × 20): \`dr-plan run PLAN --yes --concurrency 20\`;"
say "fdatasync calls of one run under \`strace -f -c -e trace=fdatasync\`, wall time without strace"
say "(best / worst of $repetitions)."
say ""
say "| binary | steps | state on | fdatasync | journal records | best | worst |"
say "|---|---|---|---|---|---|---|"
for binary in "${binaries[@]}"; do
    for kind in sleep exec; do
        plan="$work/bench-$kind.yaml"
        for location in "${locations[@]}"; do
            state="${location#*:}/state"
            environment=$(environment_of "${location%%:*}")
            calls=$(count_fdatasync "$binary" "$plan" "$state" "$environment")
            records=$(wc -l <"$(ls "$state"/runs/*/journal.jsonl)")
            times=()
            for ((repetition = 1; repetition <= repetitions; repetition++)); do
                started=$(now_nanoseconds)
                run_plan "$binary" "$plan" "$state" "$environment"
                times+=("$((($(now_nanoseconds) - started) / 1000000))")
            done
            sorted=$(printf '%s\n' "${times[@]}" | sort -n)
            say "| \`$binary\` | \`$kind\` | ${location%%:*} | $calls | $records |" \
                "$(head -1 <<<"$sorted") ms | $(tail -1 <<<"$sorted") ms |"
        done
    done
done
