# Shared by bench/spike.sh and bench/alloc.sh (sourced): a work directory removed
# on exit, the PIDs of everything started (each killed on exit), a free loopback
# port, and waiting until a port accepts connections.
#
#   start_work NAME      # sets $work to a new /tmp/tunnelscope-NAME.XXXXXX
#   pids+=($!)           # after starting a process in the background
#   p=$(port); wait_port "$p"

pids=()
start_work() {
    work="$(mktemp -d "/tmp/tunnelscope-$1.XXXXXX")"
    trap cleanup EXIT
}
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}
