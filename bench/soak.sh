#!/usr/bin/env bash
# tunnelscope's soak test: 8,000 tunnels for 60 s through the release binary, with
# sequence-numbered, checksummed messages both ways. Not part of CI or `cargo test`.
#
#   bench/soak.sh                          # the defaults: 8,000 tunnels, 60 s
#   bench/soak.sh --tunnels 1000 --secs 20 # a quicker one
#   bench/soak.sh --help                   # every option of `loadgen soak`
#
# Builds tunnelscope and bench/loadgen in release mode, raises the open-file limit
# (8,000 tunnels are 16,000 descriptors in the proxy and 16,000 in the load
# generator, clients and backend together), then runs `loadgen soak`, which starts
# the backend in-process and tunnelscope --headless with a generated config, all
# on 127.0.0.1. It exits non-zero when a check fails: a message lost, duplicated,
# out of order or corrupt, a tunnel that did not end cleanly, the proxy's memory
# growing after the first 10 s, or its descriptors not back to the baseline after
# the last close. It also reloads the config 5 times under that load (timed, with
# the proxy's memory before and after) and, when everything passed, writes those
# figures into BENCHMARKS.md. Every process started is stopped by PID on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

for a in "$@"; do
    if [[ $a == -h || $a == --help ]]; then
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        echo
        if [[ -x $here/loadgen/target/release/loadgen ]]; then
            "$here/loadgen/target/release/loadgen" soak --help
        fi
        exit 0
    fi
done

printf '\n== building tunnelscope (release)\n'
(cd "$repo" && cargo build --release)
printf '\n== building bench/loadgen (release)\n'
(cd "$here/loadgen" && cargo build --release)

ulimit -n 40000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [[ $(ulimit -n) -lt 20000 ]]; then
    echo "warning: open-file limit is $(ulimit -n); 8,000 tunnels need about 16,500 per process" >&2
fi

work="$(mktemp -d /tmp/tunnelscope-soak.XXXXXX)"
runner_pid=""
cleanup() {
    local rc=$?
    if [[ -n $runner_pid ]] && kill -0 "$runner_pid" 2>/dev/null; then
        kill "$runner_pid" 2>/dev/null || true
        wait "$runner_pid" 2>/dev/null || true
    fi
    # The runner stops the proxy it starts; if it died, kill what it left, by PID.
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

printf '\n== soak: load average %s on %s CPUs, open-file limit %s, work directory %s\n' \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)" "$(ulimit -n)" "$work"
"$here/loadgen/target/release/loadgen" soak \
    --workdir "$work" \
    --tunnelscope "$repo/target/release/tunnelscope" \
    --benchmarks "$repo/BENCHMARKS.md" \
    "$@" &
runner_pid=$!
wait "$runner_pid"
runner_pid=""
