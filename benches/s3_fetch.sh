#!/usr/bin/env bash
# Restores one Dharma-style backup from a local S3 server (s3s-fs, SigV4 checked) two
# ways, on the same object, in the same run:
#   (a) the runbook (seed 003): an `aws s3 cp`-style download of the object and of its
#       `.sha256` (boto3's transfer manager, the engine of `aws s3 cp`, with its
#       defaults: 10 threads, 8 MiB ranges), `sha256sum -c`, then
#       `openssl enc -d -aes-256-cbc -pbkdf2 | gunzip > file`
#   (b) dr-plan: `dr-plan run --yes` of a one-step plan, `s3.fetch` with its defaults
#       (download as 4 parallel ranges, SHA-256 against the sidecar, decrypt,
#       decompress into `<dest>.partial`, fsync, rename), release build
# and reports wall times, their ratio and peak resident memory. Goals: (b) at least
# 2.5x faster than (a), and at most 64 MiB resident whatever the size.
#
# Usage: [RUNS=2] benches/s3_fetch.sh [SIZE_MIB]     (default 512)
#   SIZE_MIB  size of the plain SQL dump; the object stored is about 30% of it.
# Needs s3s-fs and the Python venv with boto3 from scripts/install-test-deps.sh, and
# /usr/bin/time (installed with apt when missing). Everything lives in a temporary
# directory under ${TMPDIR:-/tmp}, removed at the end with the server.
set -euo pipefail

size_mib=${1:-512}
runs=${RUNS:-2}
repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repository/target}
tools_dir=${DR_PLAN_TEST_TOOLS:-$HOME/.cache/dr-plan-test-tools}
python=$tools_dir/venv/bin/python
s3s_fs=$(command -v s3s-fs || echo "$tools_dir/bin/s3s-fs")
access_key=DRPLANBENCHACCESSKEY
secret_key=dr-plan-bench-secret-key
bucket=dharma-backups
key=database/dharma_dharma_20251116_020000.sql.gz.enc

say() { printf '== %s\n' "$*"; }

if [ ! -x "$s3s_fs" ] || ! "$python" -c 'import boto3' 2> /dev/null; then
    echo "s3s-fs or boto3 missing: run scripts/install-test-deps.sh first" >&2
    exit 1
fi
if [ ! -x /usr/bin/time ]; then
    say "installing GNU time (for peak memory)"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
fi

say "building dr-plan (release)"
cargo build --quiet --release --bin dr-plan --manifest-path "$repository/Cargo.toml"
dr_plan=$CARGO_TARGET_DIR/release/dr-plan

say "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
say "tools: $(gzip --version | head -n 1), $(openssl version | cut -d' ' -f1-2), $(sha256sum --version | head -n 1)," \
    "Python $("$python" -c 'import platform; print(platform.python_version())')," \
    "boto3 $("$python" -c 'import boto3; print(boto3.__version__)')," \
    "s3transfer $("$python" -c 'import s3transfer; print(s3transfer.__version__)')," \
    "$("$s3s_fs" --version), dr-plan $(git -C "$repository" describe --always --dirty 2> /dev/null || echo "(not a git checkout)")"

work=$(mktemp -d "${TMPDIR:-/tmp}/s3-fetch-bench.XXXXXX")
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2> /dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

say "generating a ${size_mib} MiB plain SQL dump"
"$repository/benches/sql_dump.sh" "$size_mib" > dump.sql
plain_bytes=$(stat -c %s dump.sql)
plain_sha256=$(sha256sum dump.sql | cut -d' ' -f1)

say "making the backup as the runbook does: gzip -6 | openssl enc -aes-256-cbc -salt -pbkdf2; sha256sum"
openssl rand -base64 32 > encryption.key
artifact=$(basename "$key")
gzip -6 < dump.sql | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:encryption.key > "$artifact"
sha256sum "$artifact" > "$artifact.sha256"
rm dump.sql
artifact_bytes=$(stat -c %s "$artifact")
echo "   plain ${plain_bytes} bytes, stored ${artifact_bytes} bytes"

say "starting s3s-fs and uploading the backup with its sidecar"
mkdir -p root/$bucket
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=error "$s3s_fs" --host 127.0.0.1 --port "$port" --access-key "$access_key" --secret-key "$secret_key" root \
    > s3s-fs.log 2>&1 &
server_pid=$!
endpoint=http://127.0.0.1:$port
# Both contenders find their credentials and region in the environment, as in a
# Kubernetes job with the `aws-credentials` secret; no profile or instance metadata.
export AWS_ACCESS_KEY_ID=$access_key AWS_SECRET_ACCESS_KEY=$secret_key AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$work/no-config AWS_SHARED_CREDENTIALS_FILE=$work/no-credentials
cat > s3.py << 'EOF'
"""upload|download ENDPOINT BUCKET KEY FILE, path-style, as `aws s3 cp` does it."""
import sys

import boto3
from botocore.config import Config

action, endpoint, bucket, key, path = sys.argv[1:6]
client = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
# The transfer manager with its defaults, which are `aws s3 cp`'s: multipart above
# 8 MiB, 8 MiB parts or ranges, 10 threads.
if action == "upload":
    client.upload_file(path, bucket, key)
else:
    client.download_file(bucket, key, path)
EOF
for attempt in $(seq 100); do
    if "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2> /dev/null; then break; fi
    if [ "$attempt" -eq 100 ]; then
        echo "s3s-fs did not start:" >&2
        cat s3s-fs.log >&2
        exit 1
    fi
    sleep 0.1
done
# Uploaded through the API, as the backup job does (not copied into the server's
# directory): s3s-fs then keeps the ETag, instead of computing the MD5 of the whole
# object for every HEAD and GET, which would penalise whoever sends more requests.
"$python" s3.py upload "$endpoint" "$bucket" "$key" "$artifact"
"$python" s3.py upload "$endpoint" "$bucket" "$key.sha256" "$artifact.sha256"
rm "$artifact" "$artifact.sha256"

# s3.fetch with its defaults (`parallel: 4`); the key is read from the file the
# runbook's openssl reads (`-pass file:`), whose first line both take as the password.
cat > plan.yaml << EOF
version: 1
name: bench-s3-fetch
description: Fetch, verify, decrypt and decompress one backup.
secrets:
  backup_key: { file: $work/encryption.key }
steps:
  - id: fetch
    kind: s3.fetch
    with:
      bucket: $bucket
      key: $key
      endpoint: $endpoint
      dest: $work/out-ours.sql
      checksum: sidecar
      decrypt: { format: openssl-pbkdf2, key: "{{secrets.backup_key}}" }
      decompress: auto
EOF
"$dr_plan" validate plan.yaml > /dev/null

now() { date +%s.%N; }
ratio() { awk -v numerator="$1" -v denominator="$2" 'BEGIN { printf "%.2f", numerator / denominator }'; }

# Runs "$@" under /usr/bin/time -v, setting `seconds` (wall) and `peak` (KiB: the
# largest resident set of the command or of any one process it waited for).
measure() {
    local start end status=0
    start=$(now)
    /usr/bin/time -v -o time.log "$@" > command.log 2>&1 || status=$?
    end=$(now)
    if [ "$status" -ne 0 ]; then
        echo "!! failed ($status): $*" >&2
        cat command.log >&2
        exit 1
    fi
    peak=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' time.log)
    seconds=$(awk -v end="$end" -v start="$start" 'BEGIN { printf "%.3f", end - start }')
}

check_output() {
    local actual
    actual=$(sha256sum "$1" | cut -d' ' -f1)
    if [ "$actual" != "$plain_sha256" ]; then
        echo "!! $1 differs from the plain dump" >&2
        exit 1
    fi
}

# The runbook's commands, with a timestamp after each phase (in phases.log).
cat > seed.sh << EOF
set -euo pipefail
stamp() { echo "\$1 \$(date +%s.%N)" >> phases.log; }
: > phases.log
stamp start
"$python" s3.py download "$endpoint" "$bucket" "$key" "$artifact"
"$python" s3.py download "$endpoint" "$bucket" "$key.sha256" "$artifact.sha256"
stamp downloaded
sha256sum -c --quiet "$artifact.sha256"
stamp verified
openssl enc -d -aes-256-cbc -pbkdf2 -pass file:encryption.key -in "$artifact" | gunzip > out-seed.sql
stamp restored
EOF

seed_pipeline() {
    measure bash seed.sh
    check_output out-seed.sql
    rm -f out-seed.sql "$artifact" "$artifact.sha256"
    phases=$(awk '{ time[NR] = $2; name[NR] = $1 } END {
        for (i = 2; i <= NR; i++) printf "%s%s %.2f s", (i > 2 ? ", " : ""), name[i], time[i] - time[i - 1] }' phases.log)
}

dr_plan_fetch() {
    rm -rf state
    measure "$dr_plan" run plan.yaml --yes --state-dir state
    check_output out-ours.sql
    rm -f out-ours.sql
}

seed_times=() seed_peaks=() ours_times=() ours_peaks=()
for run in $(seq "$runs"); do
    # The contender that goes first changes from run to run.
    if [ $((run % 2)) -eq 1 ]; then order="seed ours"; else order="ours seed"; fi
    for contender in $order; do
        sync
        if [ "$contender" = seed ]; then
            say "run $run of $runs: (a) runbook pipeline"
            seed_pipeline
            echo "   ${seconds} s (${phases}), peak ${peak} KiB"
            seed_times+=("$seconds") seed_peaks+=("$peak")
        else
            say "run $run of $runs: (b) dr-plan run (s3.fetch)"
            dr_plan_fetch
            echo "   ${seconds} s, peak ${peak} KiB"
            ours_times+=("$seconds") ours_peaks+=("$peak")
        fi
    done
done

# best and median of a list of numbers; the largest for memory.
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ value[NR] = $1 } END {
    printf "%.3f", NR % 2 ? value[(NR + 1) / 2] : (value[NR / 2] + value[NR / 2 + 1]) / 2 }'; }
largest() { printf '%s\n' "$@" | sort -g | tail -n 1; }

seed_best=$(best "${seed_times[@]}") ours_best=$(best "${ours_times[@]}")
seed_median=$(median "${seed_times[@]}") ours_median=$(median "${ours_times[@]}")
seed_peak=$(largest "${seed_peaks[@]}") ours_peak=$(largest "${ours_peaks[@]}")
speedup_best=$(ratio "$seed_best" "$ours_best")
speedup_median=$(ratio "$seed_median" "$ours_median")
printf '\nrestore of a %s MiB dump (%s bytes plain, %s bytes stored), %s runs each\n' \
    "$size_mib" "$plain_bytes" "$artifact_bytes" "$runs"
printf '%-64s %8s %8s %16s\n' "" "best" "median" "peak RSS (KiB)"
printf '%-64s %7.2fs %7.2fs %16s\n' "(a) aws-style download x2; sha256sum -c; openssl enc -d | gunzip" \
    "$seed_best" "$seed_median" "$seed_peak"
printf '%-64s %7.2fs %7.2fs %16s\n' "(b) dr-plan run: s3.fetch" "$ours_best" "$ours_median" "$ours_peak"
printf '%-64s %7sx %7sx\n' "(a) / (b)" "$speedup_best" "$speedup_median"
goal_met() { awk -v speedup="$speedup_median" -v peak="$ours_peak" 'BEGIN { exit !(speedup >= 2.5 && peak <= 65536) }'; }
if goal_met; then
    echo "goals met: >= 2.5x faster (medians), <= 64 MiB (65536 KiB) resident"
else
    echo "goals NOT met: want >= 2.5x faster (medians) and <= 64 MiB (65536 KiB) resident"
fi
