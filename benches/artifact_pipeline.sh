#!/usr/bin/env bash
# Times the restore of a Dharma-style backup artifact two ways, on the same file, in the
# same run:
#   (a) the runbook:  sha256sum -c; openssl enc -d -aes-256-cbc -pbkdf2 | gunzip > out
#   (b) dr-plan:      examples/restore_file (restore_to_file: hash, decrypt and inflate
#                     overlapped on threads, .partial + fsync + rename), and the same with
#                     --stream (plain write, no fsync, as (a) does)
# and reports wall times, their ratio and peak resident memory.
#
# Usage: [RUNS=2] benches/artifact_pipeline.sh [SIZE_MIB]     (default 512; at least 1)
# Everything lives in a temporary directory under ${TMPDIR:-/tmp}, removed at the end.
set -euo pipefail

size_mib=${1:-512}
repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repository/target}

echo "== building examples/restore_file (release)"
cargo build --quiet --release --example restore_file --manifest-path "$repository/Cargo.toml"
binary=$CARGO_TARGET_DIR/release/examples/restore_file

work=$(mktemp -d "${TMPDIR:-/tmp}/artifact-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "== generating a ${size_mib} MiB plain SQL dump"
"$repository/benches/sql_dump.sh" "$size_mib" > plain.sql
plain_bytes=$(stat -c %s plain.sql)
plain_sha256=$(sha256sum plain.sql | cut -d' ' -f1)

echo "== making the artifact: gzip -6 | openssl enc -aes-256-cbc -salt -pbkdf2, plus sha256sum sidecar"
openssl rand -base64 32 > encryption.key
artifact=dharma_dharma_20251116_020000.sql.gz.enc
gzip -6 < plain.sql | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:encryption.key > "$artifact"
sha256sum "$artifact" > "$artifact.sha256"
rm plain.sql
artifact_bytes=$(stat -c %s "$artifact")
echo "   plain ${plain_bytes} bytes, artifact ${artifact_bytes} bytes"
# Both contenders read the artifact from the page cache.
cat "$artifact" > /dev/null

now() { date +%s.%N; }
ratio() { awk -v numerator="$1" -v denominator="$2" 'BEGIN { printf "%.2f", numerator / denominator }'; }

# Runs "$@", setting `seconds` (wall) and `peak` (resident KiB): from /usr/bin/time -v
# when present (it covers every process of a pipeline), otherwise by polling VmHWM.
# The command's stderr goes to command.log, shown if it fails.
measure() {
    local start end status=0
    start=$(now)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v -o time.log "$@" 2> command.log || status=$?
        end=$(now)
        peak=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' time.log)
    else
        "$@" 2> command.log &
        local pid=$! highest=0 value
        while kill -0 "$pid" 2> /dev/null; do
            value=$(awk '/VmHWM/ { print $2 }' /proc/"$pid"/status 2> /dev/null || true)
            if [ "${value:-0}" -gt "$highest" ]; then highest=$value; fi
            sleep 0.05
        done
        wait "$pid" || status=$?
        end=$(now)
        peak="${highest}(top process only)"
    fi
    if [ "$status" -ne 0 ]; then
        echo "!! failed ($status): $*" >&2
        cat command.log >&2
        exit 1
    fi
    seconds=$(awk -v end="$end" -v start="$start" 'BEGIN { printf "%.3f", end - start }')
}

check_output() {
    local actual
    actual=$(sha256sum "$1" | cut -d' ' -f1)
    if [ "$actual" != "$plain_sha256" ]; then
        echo "!! $1 differs from the plain dump" >&2
        exit 1
    fi
    rm -f "$1"
}

# Sets `best_seconds` and `best_peak`: the best wall time of $runs runs and that run's
# peak RSS. A `sync` first, so that writing back the previous run's output does not
# slow the next one down.
runs=${RUNS:-2}
best_of() {
    local output=$1
    shift
    best_seconds=""
    best_peak=""
    for _ in $(seq "$runs"); do
        sync
        measure "$@"
        check_output "$output"
        if [ -z "$best_seconds" ] || awk -v a="$seconds" -v b="$best_seconds" 'BEGIN { exit !(a < b) }'; then
            best_seconds=$seconds
            best_peak=$peak
        fi
    done
}

echo "== (a) runbook: sha256sum -c, then openssl enc -d | gunzip (best of $runs)"
best_of out-seed.sql sh -c "sha256sum -c --quiet $artifact.sha256 && openssl enc -d -aes-256-cbc -pbkdf2 -pass file:encryption.key -in $artifact | gunzip > out-seed.sql"
seed_seconds=$best_seconds seed_peak=$best_peak

echo "== (b) dr-plan restore_to_file: .partial, fsync, rename (best of $runs)"
best_of out-ours.sql "$binary" "$artifact" out-ours.sql --key-file encryption.key --sha256-file "$artifact.sha256"
ours_seconds=$best_seconds ours_peak=$best_peak

echo "== (c) dr-plan restore_stream: plain write, no fsync, like (a) (best of $runs)"
best_of out-stream.sql "$binary" "$artifact" out-stream.sql --key-file encryption.key --sha256-file "$artifact.sha256" --stream
stream_seconds=$best_seconds stream_peak=$best_peak

printf '\n%-48s %10s %16s %8s\n' "restore of a ${size_mib} MiB dump" "wall (s)" "peak RSS (KiB)" "speedup"
printf '%-48s %10.2f %16s %8s\n' "(a) sha256sum -c; openssl enc -d | gunzip" "$seed_seconds" "$seed_peak" "1.00x"
printf '%-48s %10.2f %16s %7sx\n' "(b) restore_to_file (with fsync)" "$ours_seconds" "$ours_peak" "$(ratio "$seed_seconds" "$ours_seconds")"
printf '%-48s %10.2f %16s %7sx\n' "(c) restore_stream (no fsync)" "$stream_seconds" "$stream_peak" "$(ratio "$seed_seconds" "$stream_seconds")"
