#!/usr/bin/env bash
# Issue 16's prototype measurement: the relay's inner loop on epoll and on io_uring
# (bench/relay-spike), beside tunnelscope itself (one event loop) and nginx (one
# worker), all in front of the same loadgen echo backend, measured by the same
# `loadgen echo` (64-byte messages, 100 tunnels, 8 in flight each) in interleaved
# rounds. Prints each round and the medians of the per-round ratios. The engines:
# epoll (read/write, 32 KiB buffer), splice (epoll, with each frame's payload past
# 16 KiB moved socket to pipe to socket), uring (multishot receive into a 2048 x 16
# KiB provided buffer ring, sendmsg of all queued buffers), uring-b32 (the same,
# waiting for up to 32 completions, at most 100 µs, per io_uring_enter).
#
#   bench/spike.sh [--rounds N] [--secs S] [--large]
#
# --large runs `loadgen large` (1 MiB messages) instead. Every process started is
# killed by PID on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
rounds=5 secs=4 load=echo
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --secs) secs="$2"; shift 2 ;;
        --large) load=large; shift ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
(cd "$repo" && cargo build --release -q)
(cd "$here/loadgen" && cargo build --release -q)
(cd "$here/relay-spike" && cargo build --release -q)
L="$here/loadgen/target/release/loadgen"
S="$here/relay-spike/target/release/relay-spike"
# shellcheck source=bench/common.sh
. "$here/common.sh"
start_work spike

bp=$(port); "$L" backend --plain "127.0.0.1:$bp" >"$work/backend.log" 2>&1 & pids+=($!)
wait_port "$bp"
declare -A addr pid
ep=$(port); "$S" --engine epoll --listen "127.0.0.1:$ep" --backend "127.0.0.1:$bp" & pids+=($!); addr[spike-epoll]=$ep; pid[spike-epoll]=$!
up=$(port); "$S" --engine uring --listen "127.0.0.1:$up" --backend "127.0.0.1:$bp" & pids+=($!); addr[spike-uring]=$up; pid[spike-uring]=$!
sp=$(port); "$S" --engine splice --listen "127.0.0.1:$sp" --backend "127.0.0.1:$bp" & pids+=($!); addr[spike-splice]=$sp; pid[spike-splice]=$!
# The same, waiting for up to 32 completions (at most 100 µs) per io_uring_enter.
bp2=$(port); SPIKE_BATCH=32 "$S" --engine uring --listen "127.0.0.1:$bp2" --backend "127.0.0.1:$bp" & pids+=($!); addr[spike-uring-b32]=$bp2; pid[spike-uring-b32]=$!
tp=$(port)
printf '[proxy]\nthreads = 1\n[timeouts]\nidle = "1h"\n[[listener]]\nbind = "127.0.0.1:%s"\n[pool.app]\n[[pool.app.server]]\naddr = "127.0.0.1:%s"\n' "$tp" "$bp" >"$work/ts.toml"
"$repo/target/release/tunnelscope" --config "$work/ts.toml" --headless --log warn >"$work/ts.log" 2>&1 & pids+=($!); addr[tunnelscope]=$tp; pid[tunnelscope]=$!
targets=(spike-epoll spike-splice spike-uring spike-uring-b32 tunnelscope)
if command -v nginx >/dev/null; then
    np=$(port); mkdir -p "$work/nginx-tmp"
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4000; }
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:$np;
        location / {
            proxy_pass http://127.0.0.1:$bp;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 3600s;
        }
    }
}
CONF
    nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off; master_process off;' & pids+=($!); addr[nginx]=$np; pid[nginx]=$!
    targets+=(nginx)
fi
for t in "${targets[@]}"; do wait_port "${addr[$t]}"; done
# The load generator straight to the backend: the machine's own limit.
targets+=(direct); addr[direct]=$bp; pid[direct]=""

declare -A cpu rate
for r in $(seq "$rounds"); do
    # Rotate the order each round so no target always runs first.
    n=${#targets[@]}
    for i in $(seq 0 $((n - 1))); do
        t=${targets[$(((i + r) % n))]}
        p=(); [[ -n ${pid[$t]} ]] && p=(--pid "${pid[$t]}")
        line=$("$L" "$load" --addr "127.0.0.1:${addr[$t]}" "${p[@]}" --secs "$secs" 2>&1 | tail -1)
        c=$(sed -n 's/.*proxy CPU \([0-9.]*\) µs\/msg.*/\1/p' <<<"$line")
        m=$(sed -n 's/^\([0-9.]*\) msg\/s.*/\1/p' <<<"$line")
        cpu[$t]+="$c "; rate[$t]+="$m "
        printf 'round %d  %-12s %s\n' "$r" "$t" "$line"
    done
done
python3 - "${targets[@]}" <<PY
import statistics, sys
cpu = {$(for t in "${targets[@]}"; do printf '"%s": [%s],' "$t" "$(tr ' ' ',' <<<"${cpu[$t]}")"; done)}
rate = {$(for t in "${targets[@]}"; do printf '"%s": [%s],' "$t" "$(tr ' ' ',' <<<"${rate[$t]}")"; done)}
med = statistics.median
print()
print(f"{'target':16} {'CPU µs/msg':>11} {'msg/s':>10} {'CPU vs spike-epoll':>19} {'CPU vs nginx':>13} {'msg/s vs direct':>16}")
for t in sys.argv[1:]:
    ratio = lambda x, ref: med([a / b for a, b in zip(x[t], x[ref])]) if ref in x and t != "direct" else float("nan")
    r_e, r_n, r_d = ratio(cpu, "spike-epoll"), ratio(cpu, "nginx"), ratio(rate, "direct")
    print(f"{t:16} {med(cpu[t]):11.2f} {med(rate[t]):10.0f} {r_e:18.2f}x {r_n:12.2f}x {r_d:15.2f}x")
PY
