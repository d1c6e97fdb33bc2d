#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver 1.20.2 + etcd) on loopback for dr-plan's
# tests, without a container engine or a kubelet.
#
#   scripts/kube-apiserver.sh build        build (once) kube-apiserver v1.20.2 from Debian's
#                                          `kubernetes` source package, and take etcd from
#                                          Debian's `etcd-server`; 5-13 minutes cold
#   scripts/kube-apiserver.sh up DIR PORT [OWNER_PID]
#                                          start etcd (PORT+1000, PORT+1001) and the API
#                                          server (PORT) with their data under DIR, wait
#                                          until /readyz says ok, write DIR/kubeconfig;
#                                          prints "ETCD_PID APISERVER_PID". With OWNER_PID,
#                                          both are stopped and DIR is deleted once that
#                                          process exits (for test harnesses that cannot
#                                          clean up after themselves)
#   scripts/kube-apiserver.sh down DIR     stop what `up` started under DIR
#   scripts/kube-apiserver.sh path         print the directory holding the binaries
#
# The binaries are cached outside the clone in $KUBE_TESTKIT_CACHE/bin (default
# $HOME/.cache/kube-testkit/bin), so CI can cache that directory. Only the Debian archive
# this machine's apt is configured for is used (sources and .debs are fetched with a
# private apt state; nothing is installed system-wide).
#
# Testing against it:
# - No controller manager, scheduler or kubelet runs. Deployments never get pods and no
#   status changes by itself: a test plays the controllers by patching the `status`
#   subresource (observedGeneration, readyReplicas, Job conditions, Velero's phase).
# - The API level is 1.20: CronJob is batch/v1beta1, server-side apply is beta (on).
# - Authentication is the bearer token `test-token` (group system:masters); the serving
#   certificate is self-signed and the kubeconfig sets insecure-skip-tls-verify.
set -euo pipefail

cache_dir="${KUBE_TESTKIT_CACHE:-$HOME/.cache/kube-testkit}"
bin_dir="$cache_dir/bin"
kubernetes_version="1.20.2"
# The Go toolchain Debian bookworm builds its kubernetes package with.
go_version="${KUBE_TESTKIT_GO_VERSION:-1.19}"

say() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

binaries_present() { [ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/etcd" ]; }

# Writes deb and deb-src entries for every Debian archive apt is configured with, in
# deb822 form, so the private apt state finds both the source and the binary packages.
write_source_entries() {
    local target=$1 file
    : > "$target"
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        sed -e 's/^Types:.*$/Types: deb deb-src/' "$file" >> "$target"
        printf '\n' >> "$target"
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        # One-line format: "deb [options] URI SUITE COMPONENTS..."
        sed -n -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+\([^[:space:]]\+\)[[:space:]]\+\(.*\)$/Types: deb deb-src\nURIs: \2\nSuites: \3\nComponents: \4\n/p' \
            "$file" >> "$target"
    done
    grep -q '^Types: deb deb-src' "$target" || fail "found no Debian archive in /etc/apt to fetch sources from"
}

build() {
    if binaries_present; then
        say "cached: $bin_dir"
        return
    fi
    mkdir -p "$cache_dir"
    # Two test binaries may ask for the build at once: the second waits for the first.
    exec 9> "$cache_dir/build.lock"
    flock 9
    if binaries_present; then
        say "cached: $bin_dir (built meanwhile)"
        return
    fi
    local work="$cache_dir/work" started_at=$SECONDS
    rm -rf "$work"
    mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/debs" "$work/root"
    write_source_entries "$work/apt/sources.sources"
    local apt_options=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt"
        -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache::Archives=$work/apt/archives"
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    say "fetching the package lists (private apt state under $work)"
    apt-get "${apt_options[@]}" update -qq
    say "fetching the source of Debian's kubernetes package"
    (cd "$work" && apt-get "${apt_options[@]}" source --download-only -qq kubernetes)
    say "fetching Go $go_version, rsync, etcd and reflect2"
    (cd "$work/debs" && apt-get "${apt_options[@]}" download -qq "golang-$go_version-go" \
        "golang-$go_version-src" rsync libpopt0 etcd-server golang-github-modern-go-reflect2-dev)
    local deb
    for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

    # Kubernetes' build scripts call rsync; the unpacked one needs its library path.
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' \
        "$work/root/usr/lib/x86_64-linux-gnu" "$work/root/usr/bin/rsync" > "$work/root/rsync"
    chmod +x "$work/root/rsync"

    cd "$work"
    tar -xzf kubernetes_*.orig.tar.gz
    mkdir -p debian-packaging
    tar -xJf kubernetes_*.debian.tar.xz -C debian-packaging
    cd "kubernetes-$kubernetes_version"
    local patch_name
    while read -r patch_name; do
        case "$patch_name" in '' | '#'*) continue ;; esac
        patch -p1 -s < "../debian-packaging/debian/patches/$patch_name"
    done < ../debian-packaging/debian/patches/series
    # The vendored reflect2 1.0.1 makes the API server crash under Go 1.18 and later on the
    # first create of a custom resource; Debian's reflect2 1.0.2 works.
    rm -rf vendor/github.com/modern-go/reflect2
    cp -r "$work/root/usr/share/gocode/src/github.com/modern-go/reflect2" vendor/github.com/modern-go/
    rm -f vendor/github.com/modern-go/reflect2/go.mod

    say "compiling kube-apiserver $kubernetes_version (the slow part)"
    (
        export GOROOT="$work/root/usr/lib/go-$go_version"
        export PATH="$work/root:$GOROOT/bin:$PATH" GOCACHE="$work/go-cache" HOME="$work/home"
        export CGO_ENABLED=0 GOPROXY=off GOFLAGS= GOLDFLAGS="-s -w" KUBE_BUILD_PLATFORMS=linux/amd64
        export KUBE_GIT_VERSION="v$kubernetes_version" KUBE_GIT_TREE_STATE=clean KUBE_GIT_MAJOR=1 \
            KUBE_GIT_MINOR=20 KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
        mkdir -p "$HOME"
        make WHAT=cmd/kube-apiserver > "$work/make.log" 2>&1 || {
            tail -n 40 "$work/make.log" >&2
            exit 1
        }
    ) || fail "compiling kube-apiserver failed (log above; the work tree stays in $work)"

    # Copied under temporary names and renamed, so an interrupted build never leaves a
    # binary that looks finished.
    mkdir -p "$bin_dir"
    cp "$work/root/usr/bin/etcd" "$bin_dir/etcd.partial"
    cp _output/bin/kube-apiserver "$bin_dir/kube-apiserver.partial"
    "$bin_dir/kube-apiserver.partial" --version > /dev/null
    mv "$bin_dir/etcd.partial" "$bin_dir/etcd"
    mv "$bin_dir/kube-apiserver.partial" "$bin_dir/kube-apiserver"
    cd /
    rm -rf "$work"
    say "built $("$bin_dir/kube-apiserver" --version) in $((SECONDS - started_at)) s: $bin_dir"
}

# Stops the process whose id is in FILE: TERM, a bounded wait, then KILL.
stop_pid_file() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    rm -f "$file"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

up() {
    local dir=$1 port=$2 owner=${3:-}
    binaries_present || fail "no binaries in $bin_dir: run '$0 build' first"
    local etcd_port=$((port + 1000)) peer_port=$((port + 1001))
    mkdir -p "$dir/etcd" "$dir/certs"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/service-account.key" ]; then
        openssl genrsa -out "$dir/service-account.key" 2048 2> /dev/null
        openssl rsa -in "$dir/service-account.key" -pubout -out "$dir/service-account.pub" 2> /dev/null
    fi
    printf 'test-token,admin,admin,system:masters\n' > "$dir/tokens.csv"

    "$bin_dir/etcd" --data-dir "$dir/etcd" --unsafe-no-fsync \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "default=http://127.0.0.1:$peer_port" > "$dir/etcd.log" 2>&1 &
    echo $! > "$dir/etcd.pid"

    "$bin_dir/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" --insecure-port=0 \
        --cert-dir="$dir/certs" --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$dir/service-account.pub" \
        --service-account-signing-key-file="$dir/service-account.key" \
        --service-cluster-ip-range=10.96.0.0/16 --enable-priority-and-fairness=false \
        --disable-admission-plugins=ServiceAccount > "$dir/apiserver.log" 2>&1 &
    echo $! > "$dir/apiserver.pid"

    # Bounded: 90 s, then the log tail and a failure instead of a server that never came.
    local ready=false deadline=$((SECONDS + 90))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if curl -sk --max-time 2 -H 'Authorization: Bearer test-token' \
            "https://127.0.0.1:$port/readyz" 2> /dev/null | grep -qx ok; then
            ready=true
            break
        fi
        kill -0 "$(cat "$dir/apiserver.pid")" 2> /dev/null || break
        sleep 0.1
    done
    if [ "$ready" != true ]; then
        say "kube-apiserver on port $port did not become ready; last lines of its log:"
        tail -n 30 "$dir/apiserver.log" >&2 || true
        say "last lines of the etcd log:"
        tail -n 10 "$dir/etcd.log" >&2 || true
        down "$dir"
        exit 1
    fi

    cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: test-token
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
KUBECONFIG
    if [ -n "$owner" ]; then
        # Detached from this script's output, so whoever reads it sees the end at once.
        (
            while kill -0 "$owner" 2> /dev/null; do sleep 1; done
            down "$dir"
            rm -rf "$dir"
        ) < /dev/null > /dev/null 2>&1 &
    fi
    echo "$(cat "$dir/etcd.pid") $(cat "$dir/apiserver.pid")"
}

down() {
    local dir=$1
    stop_pid_file "$dir/apiserver.pid"
    stop_pid_file "$dir/etcd.pid"
}

case "${1:-}" in
    build) build ;;
    up)
        [ $# -eq 3 ] || [ $# -eq 4 ] || fail "usage: $0 up DIR PORT [OWNER_PID]"
        up "$2" "$3" "${4:-}"
        ;;
    down)
        [ $# -eq 2 ] || fail "usage: $0 down DIR"
        down "$2"
        ;;
    path) echo "$bin_dir" ;;
    *)
        echo "usage: $0 build | up DIR PORT [OWNER_PID] | down DIR | path" >&2
        exit 2
        ;;
esac
