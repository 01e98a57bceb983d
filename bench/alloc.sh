#!/usr/bin/env bash
# Issue 16's allocator A/B: tunnelscope built with the system allocator (glibc,
# `--no-default-features`), jemalloc (the default build: freed pages go back to the
# system from jemalloc's background thread, after about 10 s) and mimalloc, each run
# fresh for every measurement, in rotated rounds:
#   - proxy CPU per 64-byte echo message (loadgen echo, default config),
#   - handshakes/s and proxy CPU per handshake (loadgen handshake),
#   - memory per idle tunnel (loadgen idle, 8,000 tunnels),
#   - RSS when a soak's tunnels have all closed, and 15 s later (loadgen soak,
#     8,000 tunnels).
#
#   bench/alloc.sh [--rounds N] [--soak-secs S]
#
# Builds the three binaries into the work directory. Every process started is stopped by PID on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
rounds=3 soak_secs=20
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --soak-secs) soak_secs="$2"; shift 2 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
ulimit -n 40000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# shellcheck source=bench/common.sh
. "$here/common.sh"
start_work alloc
(cd "$here/loadgen" && cargo build --release -q)
for a in glibc jemalloc mimalloc; do
    case $a in
        glibc) f=(--no-default-features) ;;
        jemalloc) f=() ;;
        mimalloc) f=(--no-default-features --features mimalloc) ;;
    esac
    (cd "$repo" && cargo build --release -q "${f[@]}")
    cp "$repo/target/release/tunnelscope" "$work/ts-$a"
done
(cd "$repo" && cargo build --release -q) # leave the default build in place
L="$here/loadgen/target/release/loadgen"
bp=$(port); "$L" backend --plain "127.0.0.1:$bp" >"$work/backend.log" 2>&1 & pids+=($!)
wait_port "$bp"
tp=$(port)
printf '[timeouts]\nidle = "1h"\n[[listener]]\nbind = "127.0.0.1:%s"\n[pool.app]\n[[pool.app.server]]\naddr = "127.0.0.1:%s"\n' "$tp" "$bp" >"$work/ts.toml"
variants=(glibc jemalloc mimalloc)
start() { # variant -> PID of a fresh proxy
    "$work/ts-$1" --config "$work/ts.toml" --headless --log warn >>"$work/ts.log" 2>&1 &
    echo $!
}
for r in $(seq "$rounds"); do
    n=${#variants[@]}
    for i in $(seq 0 $((n - 1))); do
        v=${variants[$(((i + r) % n))]}
        for test in echo handshake idle; do
            p=$(start "$v"); pids+=("$p"); wait_port "$tp"
            line=$("$L" "$test" --addr "127.0.0.1:$tp" --pid "$p" --secs 4 2>&1 | tail -1)
            kill "$p"; wait "$p" 2>/dev/null || true
            printf 'round %d %-15s %-9s %s\n' "$r" "$v" "$test" "$line"
        done
    done
done
# The soak: once per variant (it takes about a minute each).
for v in "${variants[@]}"; do
    line=$("$L" soak --workdir "$work/soak-$v" --tunnelscope "$work/ts-$v" \
        --benchmarks "$work/unused.md" --tunnels 8000 --secs "$soak_secs" --reloads 0 --settle 15 2>&1 |
        grep -oE "all tunnels open [0-9]+ KiB|rss after close [0-9]+ KiB, 15 s later [0-9]+ KiB" | tr '\n' ' ')
    printf "soak %-9s %s\n" "$v" "$line"
done
