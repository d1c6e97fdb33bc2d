# shellcheck shell=bash
# The 1,000-step plan of the engine benchmarks (benches/engine.sh, benches/journal_fsync.sh):
# 50 layers of 20 steps; each step needs two steps of the layer before, so the plan is a
# real DAG (width 20, depth 50) rather than 1,000 independent steps.
#
#   generate_wide_dag sleep|exec FILE   # `sleep 0s` or `exec true` steps
generate_wide_dag() {
    local kind="$1" file="$2" layers=50 width=20
    {
        printf 'version: 1\nname: bench-%s\nsteps:\n' "$kind"
        local layer position id first second with
        if [ "$kind" = sleep ]; then with='{ duration: 0s }'; else with='{ command: ["true"] }'; fi
        for ((layer = 0; layer < layers; layer++)); do
            for ((position = 0; position < width; position++)); do
                id=$(printf 's%02d-%02d' "$layer" "$position")
                if ((layer == 0)); then
                    printf '  - { id: %s, kind: %s, with: %s }\n' "$id" "$kind" "$with"
                else
                    first=$(printf 's%02d-%02d' $((layer - 1)) "$position")
                    second=$(printf 's%02d-%02d' $((layer - 1)) $(((position + 7) % width)))
                    printf '  - { id: %s, kind: %s, needs: [%s, %s], with: %s }\n' \
                        "$id" "$kind" "$first" "$second" "$with"
                fi
            done
        done
    } >"$file"
}
