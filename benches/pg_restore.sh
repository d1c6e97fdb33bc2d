#!/usr/bin/env bash
# Times the restore of the same database two ways, against the same throwaway
# PostgreSQL cluster, in the same run:
#   (a) the seeds' runbook:  createdb; psql -d DB < backup.sql        (plain pg_dump)
#   (b) dr-plan:             dr-plan run with one `pg.restore` step, `jobs: 2`,
#                            `create: true`, of a custom-format dump (pg_dump -Fc)
# plus, for reference, (c) the bare `pg_restore -j 2` that (b) runs, to show what
# dr-plan adds around it. Every restored database is checked against the original
# (row counts and an md5 of every row) before its time counts.
#
# Usage: [RUNS=5] [PROFILE=debug|release] benches/pg_restore.sh [USERS]
#   USERS   rows of `users` (default 400000); `tickets` gets 3x, `events` 1/20.
# The cluster, dumps and state live in a temporary directory, removed at the end.
# Needs the PostgreSQL server and client (scripts/install-test-deps.sh installs them).
set -euo pipefail

users=${1:-400000}
runs=${RUNS:-5}
profile=${PROFILE:-debug}
repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repository/target}

# dr-plan only starts pg_restore and waits: the profile does not change its time,
# and a debug build is much quicker to make.
echo "== building dr-plan ($profile)"
if [ "$profile" = release ]; then
    cargo build --quiet --release --manifest-path "$repository/Cargo.toml"
else
    cargo build --quiet --manifest-path "$repository/Cargo.toml"
fi
dr_plan=$CARGO_TARGET_DIR/$profile/dr-plan

binaries=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$binaries/initdb" ] || { echo "no PostgreSQL server under /usr/lib/postgresql; run scripts/install-test-deps.sh" >&2; exit 1; }
export PATH="$binaries:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/pg-restore-bench.XXXXXX")
chmod 755 "$work"
as_server_user=()
if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres "$work"
    as_server_user=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop_server() {
    "${as_server_user[@]}" pg_ctl stop -D "$work/data" -m immediate > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop_server EXIT

echo "== starting PostgreSQL $(postgres --version | awk '{print $3}') on 127.0.0.1:$port (default settings, fsync on)"
"${as_server_user[@]}" initdb -D "$work/data" -A trust -U postgres --no-locale -E UTF8 > "$work/initdb.log"
"${as_server_user[@]}" pg_ctl start -D "$work/data" -w -l "$work/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $work -c max_wal_size=4GB" > /dev/null
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
unset PGPASSWORD PGDATABASE PGSERVICE

psql_quiet() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== making tododb: $users users, $((users * 3)) tickets, $((users / 20)) events, 7 indexes, foreign keys"
createdb tododb
psql_quiet -d tododb <<SQL
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
  from generate_series(1, $users * 3) n;
create unique index users_email on users(email);
create index users_created on users(created);
create index tickets_user on tickets(user_id);
create index tickets_event on tickets(event_id);
create index tickets_bought on tickets(bought);
create index events_starts on events(starts);
analyze;
SQL
echo "   size $(psql -X -A -t -d tododb -c "select pg_size_pretty(pg_database_size('tododb'))")"

fingerprint() {
    psql -X -A -t -d "$1" -c "select (select count(*) from users), (select count(*) from tickets),
        (select count(*) from events), (select md5(string_agg(t::text, ',' order by id)) from tickets t),
        (select count(*) from pg_indexes where schemaname = 'public'),
        (select count(*) from pg_constraint where contype = 'f')"
}
expected=$(fingerprint tododb)

echo "== dumping: pg_dump > backup.sql (the seeds' form) and pg_dump -Fc > backup.dump"
pg_dump -d tododb > "$work/backup.sql"
pg_dump -Fc -d tododb > "$work/backup.dump"
echo "   backup.sql $(stat -c %s "$work/backup.sql") bytes, backup.dump $(stat -c %s "$work/backup.dump") bytes"
cat "$work/backup.sql" "$work/backup.dump" > /dev/null

cat > "$work/restore.yaml" <<YAML
version: 1
name: pg-restore-bench
description: Restore the benchmark dump into a new database with two jobs.
objectives: { rto: 30m }
vars:
  dump: placeholder
  database: placeholder
steps:
  - id: restore
    kind: pg.restore
    with: { dump: "{{vars.dump}}", database: "{{vars.database}}", create: true, jobs: 2 }
    timeout: 30m
YAML

now() { date +%s.%N; }
elapsed() { awk -v end="$(now)" -v start="$1" 'BEGIN { printf "%.2f", end - start }'; }
check() {
    local actual
    actual=$(fingerprint "$1")
    if [ "$actual" != "$expected" ]; then
        echo "!! $1 differs from tododb: $actual vs $expected" >&2
        exit 1
    fi
    dropdb "$1"
}
best() { printf '%s\n' "$@" | sort -g | head -n 1; }

# Each contender starts from the same state: nothing dirty in the server's buffers or
# the page cache from the one before (CHECKPOINT, then sync).
settle() {
    psql -X -q -d postgres -c checkpoint
    sync
}
run_seed() {
    settle
    local start
    start=$(now)
    createdb seed_restore
    psql -X -q -d seed_restore < "$work/backup.sql" > /dev/null 2> "$work/psql.log"
    seeds+=("$(elapsed "$start")")
    check seed_restore
}
run_dr_plan() {
    settle
    local start
    start=$(now)
    "$dr_plan" run "$work/restore.yaml" --yes --state-dir "$work/state" \
        --var "dump=$work/backup.dump" --var database=dr_plan_restore > "$work/dr-plan.log" 2>&1 \
        || { cat "$work/dr-plan.log" >&2; exit 1; }
    dr_plan_times+=("$(elapsed "$start")")
    check dr_plan_restore
}
run_bare() {
    settle
    local start
    start=$(now)
    createdb bare_restore
    pg_restore --exit-on-error -j 2 -d bare_restore "$work/backup.dump"
    bare+=("$(elapsed "$start")")
    check bare_restore
}

seeds=() dr_plan_times=() bare=()
contenders=(run_seed run_dr_plan run_bare)
for run in $(seq "$runs"); do
    # A different contender goes first in each run, so none always follows the same one.
    for index in 0 1 2; do
        "${contenders[$(((run + index) % 3))]}"
    done
    echo "   run $run: psql < backup.sql ${seeds[-1]} s, dr-plan pg.restore -j 2 ${dr_plan_times[-1]} s, bare pg_restore -j 2 ${bare[-1]} s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ values[NR] = $1 } END { print values[int((NR + 1) / 2)] }'; }
echo "== $runs runs, wall seconds (best / median), every result checked against tododb"
echo "   (a) createdb + psql < backup.sql        $(best "${seeds[@]}") / $(median "${seeds[@]}")"
echo "   (b) dr-plan run: pg.restore -j 2         $(best "${dr_plan_times[@]}") / $(median "${dr_plan_times[@]}")"
echo "   (c) createdb + pg_restore -j 2 (bare)    $(best "${bare[@]}") / $(median "${bare[@]}")"
awk -v a="$(median "${seeds[@]}")" -v b="$(median "${dr_plan_times[@]}")" -v c="$(median "${bare[@]}")" 'BEGIN {
    printf "   medians: (a)/(b) = %.2f (dr-plan vs the runbook); (b)/(c) = %.2f (what dr-plan adds: %.2f s)\n", a / b, b / c, b - c
}'
