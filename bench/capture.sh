#!/usr/bin/env bash
# What whole-message capture costs: the 64-byte echo load through the release
# tunnelscope (one event loop) with [inspect] capture off, watched with no one
# watching (the default), and all; the proxy's CPU per message, medians over
# rounds, ratios against capture off in the same run. Writes the "Capture cost"
# section of BENCHMARKS.md (bench/run.sh keeps it).
#
#   bench/capture.sh [--rounds N]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
rounds=5
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

(cd "$repo" && cargo build --release)
(cd "$here/loadgen" && cargo build --release)
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work="$(mktemp -d /tmp/tunnelscope-capture.XXXXXX)"
cleanup() {
    if [[ -f $work/pids ]]; then
        while read -r pid; do
            [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
        done <"$work/pids"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
"$here/loadgen/target/release/loadgen" capture \
    --tunnelscope "$repo/target/release/tunnelscope" \
    --workdir "$work" \
    --rounds "$rounds" \
    --out "$repo/BENCHMARKS.md"
