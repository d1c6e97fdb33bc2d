#!/usr/bin/env bash
# Restores one Dharma-style backup (`pg_dump | gzip | openssl enc -aes-256-cbc -pbkdf2`,
# with a `.sha256` sidecar) from a local S3 server (s3s-fs) over the live database, two
# ways, against the same PostgreSQL server, in the same run:
#   (a) the runbook: download the object and its sidecar (boto3's transfer manager, the
#       engine of `aws s3 cp`, as benches/s3_fetch.sh does), `sha256sum -c`,
#       `openssl enc -d | gunzip > file`, `dropdb`, `createdb`, `psql -f file`;
#   (b) dr-plan (release build): `pg.restore` with `from_s3` and `into: side`, a
#       `pg.query` check, `pg.swap`.
# While each runs, a client asks the live database every 50 ms for the last row of
# `users` and of `tickets`; its longest stretch without an answer is the measured
# unavailability. Measured too: the time until the database is restored (each result
# is checked against the original: row counts and an md5 of every ticket row), and
# dr-plan's peak resident memory (GNU time). Goals: (b) at least 1.3x faster than (a),
# unavailable at most 2 s, at most 64 MiB resident.
#
# Usage: [PGBIN=/usr/lib/postgresql/N/bin] benches/side_restore.sh [USERS]
#   USERS  rows of `users` (default 1000000); `tickets` gets 3x, `events` 1/20.
# Needs PostgreSQL, s3s-fs and the Python venv with boto3 (scripts/install-test-deps.sh),
# and /usr/bin/time. Everything lives in a temporary directory, removed at the end.
set -euo pipefail

users=${1:-1000000}
repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repository/target}
tools_dir=${DR_PLAN_TEST_TOOLS:-$HOME/.cache/dr-plan-test-tools}
python=$tools_dir/venv/bin/python
s3s_fs=$(command -v s3s-fs || echo "$tools_dir/bin/s3s-fs")
access_key=DRPLANBENCHACCESSKEY
secret_key=dr-plan-bench-secret-key
bucket=dharma-backups
key=database/dharma_tododb_20251116_020000.sql.gz.enc

say() { printf '== %s\n' "$*"; }

if [ ! -x "$s3s_fs" ] || ! "$python" -c 'import boto3' 2> /dev/null; then
    echo "s3s-fs or boto3 missing: run scripts/install-test-deps.sh first" >&2
    exit 1
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing: apt-get install time" >&2; exit 1; }

say "building dr-plan (release)"
cargo build --quiet --release --bin dr-plan --manifest-path "$repository/Cargo.toml"
dr_plan=$CARGO_TARGET_DIR/release/dr-plan

binaries=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
[ -x "$binaries/initdb" ] || { echo "no PostgreSQL server under $binaries" >&2; exit 1; }
export PATH="$binaries:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/side-restore-bench.XXXXXX")
chmod 755 "$work"
as_server_user=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$work"
    as_server_user=(runuser -u postgres --)
fi
server_pid="" prober_pid=""
cleanup() {
    if [ -n "$prober_pid" ]; then kill "$prober_pid" 2> /dev/null || true; fi
    if [ -n "$server_pid" ]; then kill "$server_pid" 2> /dev/null || true; fi
    "${as_server_user[@]}" pg_ctl stop -D "$work/data" -m immediate > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

say "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); PostgreSQL $(postgres --version | awk '{print $3}')," \
    "$("$s3s_fs" --version), $(openssl version | cut -d' ' -f1-2), dr-plan $(git -C "$repository" describe --always --dirty 2> /dev/null || echo '?')"

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
say "starting PostgreSQL on 127.0.0.1:$pg_port (default settings, fsync on)"
"${as_server_user[@]}" initdb -D "$work/data" -A trust -U postgres --no-locale -E UTF8 > initdb.log
"${as_server_user[@]}" pg_ctl start -D "$work/data" -w -l "$work/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work -c max_wal_size=4GB" > /dev/null
export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres
unset PGPASSWORD PGDATABASE PGSERVICE

tickets=$((users * 3))
say "making tododb: $users users, $tickets tickets, $((users / 20)) events, 6 indexes, 2 foreign keys"
createdb tododb
psql -X -q -v ON_ERROR_STOP=1 -d tododb << SQL
create table users (id bigserial primary key, email text not null, name text not null, created timestamptz not null);
create table events (id bigserial primary key, title text not null, venue text, starts date not null);
create table tickets (id bigserial primary key, user_id bigint not null references users(id),
                      event_id bigint not null references events(id), price numeric(8,2) not null,
                      status text not null, bought timestamptz not null);
insert into users (email, name, created)
  select 'user' || n || '@example.com', 'User ' || md5(n::text), now() - n * interval '1 minute'
  from generate_series(1, $users) n;
insert into events (title, venue, starts)
  select 'Event ' || n, 'Venue ' || (n % 97), date '2024-01-01' + (n % 700)
  from generate_series(1, greatest($users / 20, 1)) n;
insert into tickets (user_id, event_id, price, status, bought)
  select 1 + n % $users, 1 + n % greatest($users / 20, 1), (n % 300) * 1.25,
         (array['paid', 'refunded', 'pending'])[1 + n % 3], now() - n * interval '1 second'
  from generate_series(1, $tickets) n;
create unique index users_email on users(email);
create index tickets_user on tickets(user_id);
create index tickets_event on tickets(event_id);
create index tickets_bought on tickets(bought);
analyze;
SQL
rows=$(psql -X -A -t -d tododb -c "select (select count(*) from users) + (select count(*) from events) + (select count(*) from tickets)")
echo "   $rows rows, $(psql -X -A -t -d tododb -c "select pg_size_pretty(pg_database_size('tododb'))")"
fingerprint() {
    psql -X -A -t -d "$1" -c "select (select count(*) from users), (select count(*) from tickets),
        (select count(*) from events), (select md5(string_agg(t::text, ',' order by id)) from tickets t),
        (select count(*) from pg_indexes where schemaname = 'public'),
        (select count(*) from pg_constraint where contype = 'f')"
}
expected=$(fingerprint tododb)

say "backing up as the Dharma runbook does: pg_dump | gzip | openssl enc -aes-256-cbc -salt -pbkdf2; sha256sum"
openssl rand -base64 32 > encryption.key
artifact=$(basename "$key")
pg_dump -d tododb | gzip | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:encryption.key > "$artifact"
sha256sum "$artifact" > "$artifact.sha256"
echo "   stored $(stat -c %s "$artifact") bytes"

say "starting s3s-fs and uploading the backup and its sidecar (PUTs)"
mkdir -p root/$bucket
s3_port=$(free_port)
RUST_LOG=error "$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key "$access_key" --secret-key "$secret_key" root \
    > s3s-fs.log 2>&1 &
server_pid=$!
endpoint=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=$access_key AWS_SECRET_ACCESS_KEY=$secret_key AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$work/no-config AWS_SHARED_CREDENTIALS_FILE=$work/no-credentials
cat > s3.py << 'EOF'
"""upload|download ENDPOINT BUCKET KEY FILE, path-style, as `aws s3 cp` does it."""
import sys

import boto3
from botocore.config import Config

action, endpoint, bucket, key, path = sys.argv[1:6]
client = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
if action == "upload":
    client.upload_file(path, bucket, key)
else:
    client.download_file(bucket, key, path)
EOF
for attempt in $(seq 100); do
    if "$python" -c "import socket; socket.create_connection(('127.0.0.1', $s3_port), 0.2)" 2> /dev/null; then break; fi
    [ "$attempt" -lt 100 ] || { cat s3s-fs.log >&2; exit 1; }
    sleep 0.1
done
"$python" s3.py upload "$endpoint" "$bucket" "$key" "$artifact"
"$python" s3.py upload "$endpoint" "$bucket" "$key.sha256" "$artifact.sha256"
rm "$artifact" "$artifact.sha256"

# The client of the live database: every 50 ms, the last row of users and of tickets.
cat > prober.sh << EOF
while :; do
    if [ "\$(psql -X -A -t -d tododb -c "select (select count(*) from users where id = $users) + (select count(*) from tickets where id = $tickets)" 2> /dev/null)" = 2 ]; then
        echo "ok \$(date +%s.%N)"
    else
        echo "down \$(date +%s.%N)"
    fi
    sleep 0.05
done
EOF
start_prober() { bash prober.sh > "$1" & prober_pid=$!; sleep 1; }
stop_prober() { kill "$prober_pid"; wait "$prober_pid" 2> /dev/null || true; prober_pid=""; }
# The longest time between two answers with the data (from the last answer before a
# failure to the first one after it); 0 when no query failed.
unavailability() {
    awk '$1 == "ok" { if (down && $2 - last > worst) worst = $2 - last; last = $2; down = 0 }
         $1 == "down" { down = 1 }
         END { printf "%.2f", worst + 0 }' "$1"
}
now() { date +%s.%N; }
settle() { psql -X -q -d postgres -c checkpoint; sync; }

say "(a) runbook: download x2, sha256sum -c, openssl enc -d | gunzip > file, dropdb, createdb, psql -f file"
cat > runbook.sh << EOF
set -euo pipefail
stamp() { echo "\$1 \$(date +%s.%N)" >> phases.log; }
: > phases.log
stamp start
"$python" s3.py download "$endpoint" "$bucket" "$key" "$artifact"
"$python" s3.py download "$endpoint" "$bucket" "$key.sha256" "$artifact.sha256"
stamp downloaded
sha256sum -c --quiet "$artifact.sha256"
stamp verified
openssl enc -d -aes-256-cbc -pbkdf2 -pass file:encryption.key -in "$artifact" | gunzip > restore.sql
stamp decoded
dropdb --force tododb
createdb tododb
psql -X -q -v ON_ERROR_STOP=1 -d tododb -f restore.sql > /dev/null
stamp loaded
EOF
settle
start_prober probe-a.log
start=$(now)
bash runbook.sh
a_seconds=$(awk -v end="$(now)" -v start="$start" 'BEGIN { printf "%.2f", end - start }')
sleep 1
stop_prober
a_down=$(unavailability probe-a.log)
[ "$(fingerprint tododb)" = "$expected" ] || { echo "!! (a) restored something else" >&2; exit 1; }
a_phases=$(awk '{ time[NR] = $2; name[NR] = $1 } END {
    for (i = 2; i <= NR; i++) printf "%s%s %.2f s", (i > 2 ? ", " : ""), name[i], time[i] - time[i - 1] }' phases.log)
rm -f restore.sql "$artifact" "$artifact.sha256"
echo "   restored in ${a_seconds} s (${a_phases}); live database unavailable ${a_down} s"

cat > plan.yaml << EOF
version: 1
name: bench-side-restore
description: Restore tododb beside itself straight from S3, check it, swap it in.
objectives: { rto: 30m, rpo: 6h }
secrets:
  backup_key: { file: $work/encryption.key }
steps:
  - id: restore
    kind: pg.restore
    with:
      database: tododb
      into: side
      from_s3:
        bucket: $bucket
        key: $key
        endpoint: $endpoint
        checksum: sidecar
        decrypt: { format: openssl-pbkdf2, key: "{{secrets.backup_key}}" }
        decompress: auto
  - id: check
    kind: pg.query
    needs: [restore]
    with:
      database: "{{steps.restore.outputs.database}}"
      assert:
        - { sql: "select count(*) from tickets", expect: "= $tickets" }
  - id: swap
    kind: pg.swap
    needs: [check]
    with: { database: tododb, replacement: "{{steps.restore.outputs.database}}", keep_previous: false }
EOF
"$dr_plan" validate plan.yaml > /dev/null

say "(b) dr-plan run: pg.restore from_s3 into: side, pg.query, pg.swap"
settle
start_prober probe-b.log
start=$(now)
/usr/bin/time -v -o time-b.log "$dr_plan" run plan.yaml --yes --state-dir state > dr-plan.log 2>&1 \
    || { cat dr-plan.log >&2; exit 1; }
b_seconds=$(awk -v end="$(now)" -v start="$start" 'BEGIN { printf "%.2f", end - start }')
sleep 1
stop_prober
b_down=$(unavailability probe-b.log)
b_peak=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' time-b.log)
[ "$(fingerprint tododb)" = "$expected" ] || { echo "!! (b) restored something else" >&2; exit 1; }
swap_window=$(grep -ho '"unavailable_for":[0-9.]*' state/runs/*/journal.jsonl | tail -n 1 | cut -d: -f2 || true)
echo "   restored in ${b_seconds} s; live database unavailable ${b_down} s (pg.swap measured: ${swap_window:-?} s); peak RSS ${b_peak} KiB"

speedup=$(awk -v a="$a_seconds" -v b="$b_seconds" 'BEGIN { printf "%.2f", a / b }')
printf '\n%s rows, one run each, same backup, same server\n' "$rows"
printf '%-70s %10s %14s %16s\n' "" "restored" "unavailable" "peak RSS (KiB)"
printf '%-70s %9ss %13ss %16s\n' "(a) download, sha256sum -c, openssl | gunzip, dropdb, createdb, psql -f" "$a_seconds" "$a_down" "-"
printf '%-70s %9ss %13ss %16s\n' "(b) dr-plan: pg.restore from_s3 into side, pg.query, pg.swap" "$b_seconds" "$b_down" "$b_peak"
printf '(a) / (b) = %sx\n' "$speedup"
awk -v speedup="$speedup" 'BEGIN { exit !(speedup >= 1.3) }' && echo "goal met: >= 1.3x faster" || echo "goal NOT met: >= 1.3x faster"
awk -v down="$b_down" 'BEGIN { exit !(down <= 2) }' && echo "goal met: (b) unavailable <= 2 s" || echo "goal NOT met: (b) unavailable <= 2 s"
awk -v peak="$b_peak" 'BEGIN { exit !(peak <= 65536) }' && echo "goal met: <= 64 MiB resident" || echo "goal NOT met: <= 64 MiB resident"
