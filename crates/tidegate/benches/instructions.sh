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
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Polls until a URL answers 200; gives up after 60 s.
wait_200() {
    for _ in $(seq 1 600); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "no 200 from $1 within 60 s; logs in $dir" >&2
    exit 1
}

origin=127.0.0.1:$(port)
common="daemon off; master_process off; worker_processes 1; error_log $dir/%s.err warn;
pid $dir/%s.pid; events { worker_connections 1024; }"
http_common="access_log off; keepalive_timeout 300s; keepalive_requests 100000000;
client_body_temp_path $dir/cb; proxy_temp_path $dir/pt; fastcgi_temp_path $dir/ft;
uwsgi_temp_path $dir/ut; scgi_temp_path $dir/st;"
{
    printf "$common\n" origin origin
    echo "http { $http_common server { listen $origin; location / { return 200 \"hello\\n\"; } } }"
} > "$dir/origin.conf"
"$nginx_bin" -c "$dir/origin.conf" &
pids+=($!)
wait_200 "http://$origin/"

# Runs one proxy under callgrind and prints "requests instructions".
measure() {
    local name=$1 url=$2 vpid=$3
    wait_200 "$url"
    wrk -t1 -c50 -d2s "$url" >/dev/null
    callgrind_control -i on "$vpid" >/dev/null 2>&1
    wrk -t1 -c50 -d"${secs}s" "$url" > "$dir/$name.wrk"
    callgrind_control -d "$vpid" >/dev/null 2>&1
    callgrind_control -i off "$vpid" >/dev/null 2>&1
    local reqs ir
    reqs=$(awk '/requests in/ {print $1}' "$dir/$name.wrk")
    ir=$(callgrind_annotate "$dir/$name.cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    if [[ -z "$reqs" || -z "$ir" || "$reqs" -eq 0 ]]; then
        echo "$name: no count (wrk: ${reqs:-none}, instructions: ${ir:-none}); logs in $dir" >&2
        exit 1
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
wait_200 "http://$admin/status"
curl -sf -o /dev/null -X POST "http://$admin/services" -d name=origin -d "url=http://$origin"
curl -sf -o /dev/null -X POST "http://$admin/services/origin/routes" -d name=plain -d 'paths[]=/plain'
read -r t_reqs t_ir < <(measure tidegate "http://$proxy/plain" "$tpid")
kill "$tpid"

# nginx: one worker, upstream keepalive, the bench's proxy headers.
nproxy=127.0.0.1:$(port)
{
    printf "$common\n" proxy proxy
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
read -r n_reqs n_ir < <(measure nginx "http://$nproxy/plain" "$npid")

python3 - "$t_reqs" "$t_ir" "$n_reqs" "$n_ir" <<'EOF'
import sys
t_reqs, t_ir, n_reqs, n_ir = map(int, sys.argv[1:])
t, n = t_ir / t_reqs, n_ir / n_reqs
print(f"user-space instructions per proxied request, wrk -t1 -c50, under callgrind")
print(f"  tidegate  {t:>9,.0f}  ({t_reqs:,} requests)")
print(f"  nginx     {n:>9,.0f}  ({n_reqs:,} requests)")
print(f"  tidegate / nginx  {t / n:.2f}x")
EOF
