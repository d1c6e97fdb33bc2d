#!/usr/bin/env bash
# Writes a plain SQL dump of SIZE_MIB mebibytes to standard output, in pg_dump's plain
# format: a few tables, COPY blocks of tab-separated rows with varied, realistic values
# (ids, names, emails, amounts, timestamps, statuses, some text). Seeded, so every run
# writes the same bytes. Used by the restore benchmarks.
#
# Usage: benches/sql_dump.sh SIZE_MIB > dump.sql
set -euo pipefail
size_mib=${1:?usage: benches/sql_dump.sh SIZE_MIB}
awk -v limit=$((size_mib * 1048576)) 'BEGIN {
    srand(20251116)
    split("alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil trent victor walter", names, " ")
    split("pending paid shipped delivered refunded cancelled", statuses, " ")
    split("example.org mail.example.com dharma.dev corp.example.net", domains, " ")
    split("Standard delivery|Express, signature required|Leave at the door|Gift wrap, no invoice|Call before delivery|", notes, "|")
    print "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = '\''UTF8'\'';\n"
    written = 0; table = 0; id = 0
    while (written < limit) {
        table++
        print "COPY public.orders_" table " (id, customer_id, customer_name, email, amount, currency, status, created_at, note) FROM stdin;"
        for (row = 0; row < 200000 && written < limit; row++) {
            id++
            name = names[int(rand() * 19) + 1]
            line = id "\t" int(rand() * 5000000) "\t" name " " names[int(rand() * 19) + 1] "\t" name "." int(rand() * 100000) "@" domains[int(rand() * 4) + 1] \
                "\t" sprintf("%.2f", rand() * 2000) "\tEUR\t" statuses[int(rand() * 6) + 1] \
                "\t" sprintf("2025-%02d-%02d %02d:%02d:%02d.%06d+00", int(rand() * 12) + 1, int(rand() * 28) + 1, int(rand() * 24), int(rand() * 60), int(rand() * 60), int(rand() * 1000000)) \
                "\t" notes[int(rand() * 6) + 1]
            print line
            written += length(line) + 1
        }
        print "\\.\n"
    }
    print "--\n-- PostgreSQL database dump complete\n--"
}'
