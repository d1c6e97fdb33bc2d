#!/usr/bin/env bash
# Compares `dr-plan lint DIR` (one process over every plan) with `check-jsonschema`
# against the generated plan schema, on 200 generated plans, in the same run; then shows
# two problems a schema cannot see (a `needs` cycle, an undefined template variable)
# that dr-plan reports and check-jsonschema lets through.
#
# Usage: benches/lint_vs_jsonschema.sh            (from anywhere inside the repository)
# Needs: cargo, python3 (for the venv and for reading timings). Uses hyperfine when it is
# on PATH (Debian package `hyperfine`), else times 5 runs of each with `date +%s%N` and
# takes the median. check-jsonschema (PyPI) is installed into
# $HOME/.cache/dr-plan-test-tools/venv when missing.
set -euo pipefail

repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repository"

plan_count=200
runs=5

echo "== building dr-plan (release)"
cargo build --release --quiet
target_directory="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
dr_plan="$target_directory/release/dr-plan"

venv="$HOME/.cache/dr-plan-test-tools/venv"
if [[ ! -x "$venv/bin/check-jsonschema" ]]; then
    echo "== installing check-jsonschema into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet check-jsonschema
fi
check_jsonschema="$venv/bin/check-jsonschema"
schema="$repository/schemas/plan.schema.json"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
plans="$work/plans"
mkdir -p "$plans"

# One generated plan: the shipped db-corruption plan with every step id, `needs` entry
# and `steps.ID.` reference suffixed with the plan's number, plus 0-9 extra steps chained
# after `start-writers` (notify, http.check, sleep in turn), so files differ in ids,
# length and kinds.
generate() {
    local number="$1" extra="$2"
    sed -e "s/^name: db-corruption$/name: db-corruption-$number/" \
        -e "s/\\(^\\|[^.a-z0-9-]\\)\\(stop-writers\\|fetch\\|safety-backup\\|restore\\|check\\|start-writers\\)\\([^.a-z0-9-]\\|$\\)/\\1\\2-$number\\3/g" \
        -e "s/steps\\.\\(stop-writers\\|fetch\\|safety-backup\\|restore\\|check\\|start-writers\\)\\./steps.\\1-$number./g" \
        plans/db-corruption.yaml
    local previous="start-writers-$number"
    for ((step = 1; step <= extra; step++)); do
        local id="after-$number-$step"
        case $((step % 3)) in
            0) printf '  - id: %s\n    kind: notify\n    needs: [%s]\n    with: { webhook: "https://hooks.example.com/dr", message: "plan %s step %s done" }\n' \
                "$id" "$previous" "$number" "$step" ;;
            1) printf '  - id: %s\n    kind: http.check\n    needs: [%s]\n    with: { url: "https://api-%s.example.com/healthz", deadline: 5m }\n    estimate: 30s\n' \
                "$id" "$previous" "$number" ;;
            2) printf '  - id: %s\n    kind: sleep\n    needs: [%s]\n    with: { duration: %ss }\n' \
                "$id" "$previous" "$step" ;;
        esac
        previous="$id"
    done
}

echo "== generating $plan_count plans in $plans"
for ((number = 1; number <= plan_count; number++)); do
    generate "$number" $((number % 10)) >"$plans/plan-$(printf '%03d' "$number").yaml"
done
plan_files=("$plans"/*.yaml)

# Both tools must accept every generated plan, or the timing compares failures.
"$dr_plan" validate "${plan_files[@]}" >/dev/null
"$check_jsonschema" --schemafile "$schema" "${plan_files[@]}" >/dev/null
echo "   all $plan_count plans pass \`dr-plan validate\` and check-jsonschema"

lint_command="$dr_plan lint $plans"
schema_command="$check_jsonschema --schemafile $schema ${plan_files[*]}"

# Median wall time of a command over $runs runs, in milliseconds.
median_milliseconds() {
    local command="$1" times=() start end
    for ((run = 0; run < runs; run++)); do
        start=$(date +%s%N)
        $command >/dev/null
        end=$(date +%s%N)
        times+=($(((end - start) / 1000000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$((runs / 2 + 1))p"
}

echo "== timing ($plan_count files)"
if command -v hyperfine >/dev/null; then
    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$work/timings.json" \
        --command-name "dr-plan lint DIR" "$lint_command" \
        --command-name "check-jsonschema FILES" "$schema_command"
    read -r lint_milliseconds schema_milliseconds < <(python3 -c '
import json, sys
results = json.load(open(sys.argv[1]))["results"]
print(" ".join(str(round(result["median"] * 1000, 1)) for result in results))' "$work/timings.json")
    method="hyperfine, median of $runs runs after 1 warm-up"
else
    "$dr_plan" lint "$plans" >/dev/null
    lint_milliseconds=$(median_milliseconds "$lint_command")
    schema_milliseconds=$(median_milliseconds "$schema_command")
    method="date +%s%N, median of $runs runs"
fi
ratio=$(python3 -c "print(f'{$schema_milliseconds / $lint_milliseconds:.1f}')")
echo
echo "dr-plan lint DIR        : ${lint_milliseconds} ms"
echo "check-jsonschema FILES  : ${schema_milliseconds} ms"
echo "ratio                   : check-jsonschema takes ${ratio}x the time of dr-plan lint ($method)"

echo
echo "== what a schema cannot see"
problems="$work/problems"
mkdir -p "$problems"
# A cycle: stop-writers now needs start-writers, which (through check, restore) needs it.
generate 901 0 | sed -e '/^  - id: stop-writers-901$/a\    needs: [start-writers-901]' >"$problems/cycle.yaml"
# An undefined variable: `namespce` is not declared under `vars:`.
generate 902 0 | sed -e '0,/{{vars.namespace}}/s//{{vars.namespce}}/' >"$problems/undefined-var.yaml"
for file in "$problems/cycle.yaml" "$problems/undefined-var.yaml"; do
    echo "-- $(basename "$file")"
    output=$("$check_jsonschema" --schemafile "$schema" "$file" 2>&1) && status=0 || status=$?
    printf '%s\n' "$output" | sed 's/^/   /'
    echo "   check-jsonschema: exit $status"
    output=$(NO_COLOR=1 "$dr_plan" validate "$file" 2>&1) && status=0 || status=$?
    printf '%s\n' "$output" | sed 's/^/   /'
    echo "   dr-plan validate: exit $status"
done
