#!/usr/bin/env bash
# User-space instructions per proxied request: tidegate against nginx, in one run.
#
#   crates/tidegate/benches/instructions.sh [seconds]     (default 10)
#
# Wall-clock CPU per request moves by ±20% on a shared VM from one window to the next;
# an instruction count does not (two runs of the same build agree within 1%). So a
# change to the request path is judged here first, and in `--bench proxy` after.
#
# Both proxies run under valgrind's callgrind, one worker each, in front of the same
# nginx origin (`200 hello`, keepalive), with the proxy headers of the proxy bench.
# wrk warms each up for 2 s with counting off, then counts for [seconds] at 50
# connections; the figure is the instructions counted over wrk's completed requests.
# Only user space is counted: the kernel's work per request is about equal for the two
# (BENCHMARKS.md, proxy section). Needs valgrind, nginx, wrk, curl and python3
# (apt-get install valgrind nginx wrk curl python3). Uses TIDEGATE_BIN if set, else
# builds the release binary.
set -euo pipefail

secs=${1:-10}
for tool in valgrind callgrind_control callgrind_annotate nginx wrk curl python3; do
    command -v "$tool" >/dev/null || {
        echo "needs $tool: apt-get install valgrind nginx wrk curl python3" >&2
        exit 2
    }
done
root=$(cd "$(dirname "$0")/../../.." && pwd)
if [[ -z "${TIDEGATE_BIN:-}" ]]; then
    (cd "$root" && cargo build --release -p tidegate --bin tidegate >&2)
    TIDEGATE_BIN=$root/target/release/tidegate
fi
nginx_bin=$(command -v nginx)

dir=$(mktemp -d)
pids=()
# The temp dir holds the logs: kept when the run failed, and its path printed.
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $rc -eq 0 ]]; then
        rm -rf "$dir"
    else
        echo "failed; logs kept in $dir" >&2
    fi
}
trap cleanup EXIT

fail() {
    echo "$*" >&2
    exit 1
}
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Polls until a URL answers 200 while process $2 lives; gives up after 180 s (a debug
# build starting under valgrind on a busy 2-core machine is slow).
wait_200() {
    for _ in $(seq 1 1800); do
        curl -sf -o /dev/null "$1" && return 0
        kill -0 "$2" 2>/dev/null || fail "the process behind $1 exited before answering"
        sleep 0.1
    done
    fail "no 200 from $1 within 180 s"
}
# The nginx settings both configs share; $1 names the pid and error log files.
nginx_common() {
    echo "daemon off; master_process off; worker_processes 1;"
    echo "error_log \"$dir/$1.err\" warn; pid \"$dir/$1.pid\"; events { worker_connections 1024; }"
}
http_common="access_log off; keepalive_timeout 300s; keepalive_requests 100000000;
client_body_temp_path \"$dir/cb\"; proxy_temp_path \"$dir/pt\"; fastcgi_temp_path \"$dir/ft\";
uwsgi_temp_path \"$dir/ut\"; scgi_temp_path \"$dir/st\";"

origin=127.0.0.1:$(port)
{
    nginx_common origin
    echo "http { $http_common server { listen $origin; location / { return 200 \"hello\\n\"; } } }"
} > "$dir/origin.conf"
"$nginx_bin" -c "$dir/origin.conf" > "$dir/origin.log" 2>&1 &
opid=$!
pids+=($opid)
wait_200 "http://$origin/" "$opid"

# Runs one proxy under callgrind and prints "requests instructions".
measure() {
    local name=$1 url=$2 vpid=$3
    wait_200 "$url" "$vpid"
    wrk -t1 -c50 -d2s "$url" >/dev/null
    callgrind_control -i on "$vpid" > "$dir/$name.control" 2>&1 || fail "callgrind_control -i on failed: $(cat "$dir/$name.control")"
    wrk -t1 -c50 -d"${secs}s" "$url" > "$dir/$name.wrk"
    callgrind_control -d "$vpid" > "$dir/$name.control" 2>&1 || fail "callgrind_control -d failed: $(cat "$dir/$name.control")"
    callgrind_control -i off "$vpid" > "$dir/$name.control" 2>&1 || fail "callgrind_control -i off failed: $(cat "$dir/$name.control")"
    # A proxy that answers errors is not measured. (Socket timeouts are not failures:
    # under callgrind a debug build can take longer than wrk's 2 s for one request.)
    ! grep -q "Non-2xx" "$dir/$name.wrk" || fail "$name answered errors: $(cat "$dir/$name.wrk")"
    local reqs ir
    reqs=$(awk '/requests in/ {print $1}' "$dir/$name.wrk")
    ir=$(callgrind_annotate "$dir/$name.cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    if [[ -z "$reqs" || -z "$ir" || "$reqs" -le 0 || "$ir" -le 0 ]]; then
        fail "$name: no count (wrk: ${reqs:-none} requests, ${ir:-no} instructions)"
    fi
    echo "$reqs $ir"
}

# tidegate: traditional role, one worker, one service and one route, as in the bench.
admin=127.0.0.1:$(port)
proxy=127.0.0.1:$(port)
TIDEGATE_WORKER_THREADS=1 TIDEGATE_ADMIN_LISTEN=$admin TIDEGATE_PROXY_LISTEN=$proxy \
    TIDEGATE_ADMIN_GUI_LISTEN=off TIDEGATE_LOG_LEVEL=warn \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/tidegate.cg" \
    "$TIDEGATE_BIN" start -p "$dir/tidegate" > "$dir/tidegate.log" 2>&1 &
tpid=$!
pids+=($tpid)
wait_200 "http://$admin/status" "$tpid"
curl -sf -o /dev/null -X POST "http://$admin/services" -d name=origin -d "url=http://$origin" ||
    fail "could not create the service"
curl -sf -o /dev/null -X POST "http://$admin/services/origin/routes" -d name=plain -d 'paths[]=/plain' ||
    fail "could not create the route"
# A command substitution, so that a failed measure fails the script.
counts=$(measure tidegate "http://$proxy/plain" "$tpid")
read -r t_reqs t_ir <<< "$counts"
kill "$tpid"

# nginx: one worker, upstream keepalive, the bench's proxy headers.
nproxy=127.0.0.1:$(port)
{
    nginx_common proxy
    echo "http { $http_common
  upstream origin { server $origin; keepalive 64; keepalive_requests 100000000; }
  server { listen $nproxy; location / { proxy_pass http://origin; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Forwarded-Port \$server_port; } } }"
} > "$dir/proxy.conf"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/nginx.cg" \
    "$nginx_bin" -c "$dir/proxy.conf" > "$dir/nginx.log" 2>&1 &
npid=$!
pids+=($npid)
counts=$(measure nginx "http://$nproxy/plain" "$npid")
read -r n_reqs n_ir <<< "$counts"

python3 - "$t_reqs" "$t_ir" "$n_reqs" "$n_ir" <<'EOF'
import sys
t_reqs, t_ir, n_reqs, n_ir = map(int, sys.argv[1:])
t, n = t_ir / t_reqs, n_ir / n_reqs
print(f"user-space instructions per proxied request, wrk -t1 -c50, under callgrind")
print(f"  tidegate  {t:>9,.0f}  ({t_reqs:,} requests)")
print(f"  nginx     {n:>9,.0f}  ({n_reqs:,} requests)")
print(f"  tidegate / nginx  {t / n:.2f}x")
EOF
