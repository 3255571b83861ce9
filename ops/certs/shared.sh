#!/usr/bin/env bash
# Certificates for `cluster_mtls = shared` (Kong's default hybrid setup): one pair that
# every control plane and data plane presents, made by `tidegate hybrid gen_cert`
# (EC P-384, CN kong_clustering, 3 years), plus the control planes' Raft link, which
# always has a CA and credentials of its own (made by pki.sh -r).
#
# usage: ops/certs/shared.sh [-o DIR] [-i INSTALL_DIR] [-d DAYS] -c CP_HOST [-c CP_HOST ...]
#                            [-p DP_NAME ...]
#
#   -c CP_HOST     a control plane, by the host name or IP address its peers dial
#                  (the host in raft_peers); repeat for each
#   -p DP_NAME     a data plane, to get a directory with what it needs; repeat for each
#   -o DIR         where to write (default: ./tidegate-certs)
#   -i DIR         where the files will live on each node, for the settings written in
#                  DIR/<node>/tls.conf (default: /etc/tidegate/certs)
#   -d DAYS        validity (default: 1095)
#
# The binary is `tidegate` on PATH, or $TIDEGATE (e.g. TIDEGATE=./target/release/tidegate).
# Layout of DIR: as pki.sh's, with cluster.crt and cluster.key (the shared pair) at the
# top and copied into every <node>/ directory. Running it again keeps an existing pair.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tidegate=${TIDEGATE:-tidegate}
out=./tidegate-certs
install_dir=/etc/tidegate/certs
days=1095
cps=()
dps=()

usage() {
  sed -n '7,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while getopts "o:i:d:c:p:h" opt; do
  case "$opt" in
    o) out=$OPTARG ;;
    i) install_dir=$OPTARG ;;
    d) days=$OPTARG ;;
    c) cps+=("$OPTARG") ;;
    p) dps+=("$OPTARG") ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
if [ ${#cps[@]} -eq 0 ]; then
  echo "shared.sh: name at least one control plane with -c HOST" >&2
  usage
fi
command -v "$tidegate" >/dev/null 2>&1 || {
  echo "shared.sh: '$tidegate' not found: build it (cargo build --release -p tidegate) and set TIDEGATE=path/to/tidegate" >&2
  exit 1
}

mkdir -p "$out"
if [ -f "$out/cluster.crt" ] && [ -f "$out/cluster.key" ]; then
  echo "reusing the shared pair $out/cluster.crt"
else
  "$tidegate" hybrid gen_cert --days "$days" "$out/cluster.crt" "$out/cluster.key"
fi

cp_args=()
for host in "${cps[@]}"; do
  cp_args+=(-c "$host")
done
"$here/pki.sh" -r -o "$out" -i "$install_dir" -d "$days" "${cp_args[@]}"

# Every node presents the same pair; shared mode pins it, so no CA is involved.
for node in "${cps[@]}" "${dps[@]}"; do
  dir="$out/$node"
  mkdir -p "$dir"
  cp "$out/cluster.crt" "$dir/cluster.crt"
  (umask 077 && cp "$out/cluster.key" "$dir/cluster.key")
  settings="cluster_mtls = shared
cluster_cert = $install_dir/cluster.crt
cluster_cert_key = $install_dir/cluster.key"
  if [ -f "$dir/tls.conf" ] && grep -q '^raft_cert ' "$dir/tls.conf"; then
    # pki.sh -r wrote the Raft settings of this control plane: keep them, add ours once.
    grep -v '^cluster_' "$dir/tls.conf" >"$dir/tls.conf.new"
    printf '%s\n' "$settings" >>"$dir/tls.conf.new"
    mv "$dir/tls.conf.new" "$dir/tls.conf"
  else
    printf '# TLS settings of data plane %s (ops/certs), files in %s.\n%s\n' \
      "$node" "$install_dir" "$settings" >"$dir/tls.conf"
  fi
done

echo "done: copy $out/<node>/ to $install_dir on each node and append its tls.conf to the node's settings"
