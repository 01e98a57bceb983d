#!/usr/bin/env bash
# tunnelscope's benchmark against nginx and HAProxy, in one run, written to
# BENCHMARKS.md at the repository root.
#
#   bench/run.sh                 # the full run: 3 rounds (under 10 minutes)
#   bench/run.sh --rounds 5      # more rounds
#   bench/run.sh --dashboard off # skip the dashboard's cost (auto-detected by default)
#   bench/run.sh --quick         # smoke test: 1 round, short windows, 1,000 idle tunnels,
#                                # report written to /tmp/tunnelscope-BENCHMARKS-quick.md
#
# What it does: installs nginx and HAProxy from Debian if missing (and stops any
# service instance the packages start), builds tunnelscope and bench/loadgen in
# release mode, then runs `loadgen run`, which starts the echo backends and every
# target on 127.0.0.1 itself, in the foreground, with config files in a temporary
# directory. Every process started is killed by PID on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

rounds=3
dashboard=auto
quick=0
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --dashboard) dashboard="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --tests) extra+=(--tests "$2"); shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '\n== %s\n' "$*"; }

# --- nginx and HAProxy from Debian -------------------------------------------------
install_proxies() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v haproxy >/dev/null || missing+=(haproxy)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to apt-get install ${missing[*]} (or install them first)" >&2
        exit 1
    fi
    # Keep the packages' post-install scripts from starting daemons: a policy-rc.d
    # that says no, only if there is none already, removed afterwards. apt waits up
    # to 10 minutes for another apt to finish.
    local policy=/usr/sbin/policy-rc.d placed=0 rc=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        placed=1
    fi
    {
        apt-get -o DPkg::Lock::Timeout=600 update &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
                install -y nginx haproxy
    } || rc=$?
    if [[ $placed -eq 1 ]]; then rm -f "$policy"; fi
    if [[ $rc -ne 0 ]]; then
        echo "apt-get failed ($rc): install nginx and haproxy, then rerun" >&2
        exit 1
    fi
    # If a service instance was started anyway, stop it and keep it from starting.
    for svc in nginx haproxy; do
        service "$svc" stop >/dev/null 2>&1 || true
        if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    done
}
install_proxies

# --- builds ------------------------------------------------------------------------
log "building tunnelscope (release)"
(cd "$repo" && cargo build --release)
log "building bench/loadgen (release)"
(cd "$here/loadgen" && cargo build --release)

# --- the run -----------------------------------------------------------------------
# 8,000 idle tunnels are 16,000 descriptors in a proxy.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d /tmp/tunnelscope-bench.XXXXXX)"
runner_pid=""
cleanup() {
    local rc=$?
    # The runner stops what it starts; if it died, kill what it left, by PID.
    if [[ -n $runner_pid ]] && kill -0 "$runner_pid" 2>/dev/null; then
        kill "$runner_pid" 2>/dev/null || true
        wait "$runner_pid" 2>/dev/null || true
    fi
    if [[ -f $work/pids ]]; then
        while read -r pid; do
            [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
        done <"$work/pids"
        sleep 0.5
        while read -r pid; do
            [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
        done <"$work/pids"
    fi
    if [[ $rc -ne 0 ]]; then
        echo "logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

out="$repo/BENCHMARKS.md"
opts=(--rounds "$rounds")
if [[ $quick -eq 1 ]]; then
    out="/tmp/tunnelscope-BENCHMARKS-quick.md"
    opts=(--rounds 1 --warm-secs 0.5 --echo-secs 1 --large-secs 1 --handshake-secs 1 --idle-tunnels 1000)
fi
rerun="bench/run.sh"
if [[ $rounds != 3 && $quick -eq 0 ]]; then rerun+=" --rounds $rounds"; fi

log "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; work directory $work"
"$here/loadgen/target/release/loadgen" run \
    --workdir "$work" \
    --tunnelscope "$repo/target/release/tunnelscope" \
    --out "$out" \
    --dashboard "$dashboard" \
    --rerun "$rerun" \
    "${opts[@]}" ${extra[@]+"${extra[@]}"} &
runner_pid=$!
wait "$runner_pid"
runner_pid=""
