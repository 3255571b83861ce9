#!/usr/bin/env bash
# Certificates for `cluster_mtls = pki` and for the control planes' Raft link, made with
# openssl: one CA per link (a data plane's certificate must never be accepted on the Raft
# port, so the Raft CA signs control planes only) and a certificate per node.
#
# usage: ops/certs/pki.sh [-o DIR] [-i INSTALL_DIR] [-n SERVER_NAME] [-d DAYS] [-r] [-f]
#                         -c CP_HOST [-c CP_HOST ...] [-p DP_NAME ...]
#
#   -c CP_HOST     a control plane, by the host name or IP address its peers dial
#                  (the host in raft_peers); repeat for each
#   -p DP_NAME     a data plane; repeat for each
#   -n NAME        cluster_server_name: the name every control plane's cluster certificate
#                  carries and data planes check (default: tidegate-cp)
#   -o DIR         where to write (default: ./tidegate-certs)
#   -i DIR         where the files will live on each node, for the settings written in
#                  DIR/<node>/tls.conf (default: /etc/tidegate/certs)
#   -d DAYS        validity of node certificates (default: 1095; the CAs get 3650)
#   -r             the Raft link only (shared.sh: shared mode needs no cluster CA)
#   -f             re-issue node certificates that already exist
#
# Layout of DIR:
#   ca/                    the CAs' private keys: keep them offline, they sign new nodes
#   cluster-ca.crt         cluster_ca_cert of every node
#   raft-ca.crt            raft_ca_cert of every control plane
#   <node>/                everything one node needs; copy it to INSTALL_DIR on that node:
#       cluster.crt cluster.key cluster-ca.crt      cluster_cert, cluster_cert_key, cluster_ca_cert
#       raft.crt raft.key raft-ca.crt               raft_cert, raft_cert_key, raft_ca_cert (CPs)
#       tls.conf                                    those settings, to append to its tidegate.conf
#
# Running it again reuses the CAs in DIR/ca and only issues what is missing, so adding a
# control plane or a data plane later is one more run with the new -c or -p.
set -euo pipefail

out=./tidegate-certs
install_dir=/etc/tidegate/certs
server_name=tidegate-cp
days=1095
ca_days=3650
raft_only=0
force=0
cps=()
dps=()

usage() {
  sed -n '5,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while getopts "o:i:n:d:c:p:rfh" opt; do
  case "$opt" in
    o) out=$OPTARG ;;
    i) install_dir=$OPTARG ;;
    n) server_name=$OPTARG ;;
    d) days=$OPTARG ;;
    c) cps+=("$OPTARG") ;;
    p) dps+=("$OPTARG") ;;
    r) raft_only=1 ;;
    f) force=1 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
if [ ${#cps[@]} -eq 0 ]; then
  echo "pki.sh: name at least one control plane with -c HOST" >&2
  usage
fi
if ! [[ $days =~ ^[1-9][0-9]*$ ]]; then
  echo "pki.sh: -d takes a number of days, got '$days'" >&2
  exit 2
fi
command -v openssl >/dev/null 2>&1 || {
  echo "pki.sh: openssl is not installed (Debian: apt-get install openssl)" >&2
  exit 1
}

mkdir -p "$out/ca"
chmod 700 "$out/ca"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A SAN entry for a host: IP addresses as IP, the rest as DNS names.
san() {
  if [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $1 == *:* ]]; then
    echo "IP:$1"
  else
    echo "DNS:$1"
  fi
}

new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
}

# ca NAME COMMON_NAME: DIR/ca/NAME.key and DIR/NAME.crt, unless they exist.
ca() {
  local key="$out/ca/$1.key" crt="$out/$1.crt"
  if [ -f "$key" ] && [ -f "$crt" ]; then
    echo "reusing the $2 ($crt)"
    return
  fi
  new_key "$key"
  cat >"$work/$1.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = $2
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
  openssl req -x509 -new -key "$key" -sha256 -days "$ca_days" -config "$work/$1.cnf" -out "$crt"
  echo "made the $2 ($crt)"
}

# issue CA NODE_DIR FILE_STEM COMMON_NAME EXT_KEY_USAGE SAN...
issue() {
  local ca_name=$1 dir=$2 stem=$3 cn=$4 eku=$5
  shift 5
  local key="$dir/$stem.key" crt="$dir/$stem.crt"
  if [ -f "$key" ] && [ -f "$crt" ] && [ "$force" -eq 0 ]; then
    echo "  $crt exists (-f re-issues it)"
    return
  fi
  local sans
  sans=$(IFS=,; echo "$*")
  mkdir -p "$dir"
  new_key "$key"
  cat >"$work/leaf.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $cn
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = $eku
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
  openssl req -new -key "$key" -config "$work/leaf.cnf" -out "$work/leaf.csr"
  openssl x509 -req -in "$work/leaf.csr" -CA "$out/$ca_name.crt" -CAkey "$out/ca/$ca_name.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$work/leaf.cnf" -extensions leaf -out "$crt" 2>/dev/null
  echo "  issued $crt ($cn: $sans)"
}

ca raft-ca "tidegate Raft CA"
if [ "$raft_only" -eq 0 ]; then
  ca cluster-ca "tidegate cluster CA"
fi

for host in "${cps[@]}"; do
  dir="$out/$host"
  echo "control plane $host:"
  issue raft-ca "$dir" raft "$host" serverAuth,clientAuth "$(san "$host")"
  cp "$out/raft-ca.crt" "$dir/raft-ca.crt"
  conf="# TLS settings of control plane $host (ops/certs), files in $install_dir.
raft_cert = $install_dir/raft.crt
raft_cert_key = $install_dir/raft.key
raft_ca_cert = $install_dir/raft-ca.crt"
  if [ "$raft_only" -eq 0 ]; then
    # A DP checks the CP's certificate against cluster_server_name, or against the host
    # it dials when that is unset: the certificate carries both.
    issue cluster-ca "$dir" cluster "$host" serverAuth,clientAuth "DNS:$server_name" "$(san "$host")"
    cp "$out/cluster-ca.crt" "$dir/cluster-ca.crt"
    conf="$conf
cluster_mtls = pki
cluster_cert = $install_dir/cluster.crt
cluster_cert_key = $install_dir/cluster.key
cluster_ca_cert = $install_dir/cluster-ca.crt"
  fi
  printf '%s\n' "$conf" >"$dir/tls.conf"
done

if [ "$raft_only" -eq 0 ]; then
  for name in "${dps[@]}"; do
    dir="$out/$name"
    echo "data plane $name:"
    issue cluster-ca "$dir" cluster "$name" clientAuth "DNS:$name"
    cp "$out/cluster-ca.crt" "$dir/cluster-ca.crt"
    cat >"$dir/tls.conf" <<CONF
# TLS settings of data plane $name (ops/certs), files in $install_dir.
cluster_mtls = pki
cluster_cert = $install_dir/cluster.crt
cluster_cert_key = $install_dir/cluster.key
cluster_ca_cert = $install_dir/cluster-ca.crt
cluster_server_name = $server_name
CONF
  done
elif [ ${#dps[@]} -gt 0 ]; then
  echo "pki.sh: -r makes the Raft link's certificates only; data planes (-p) have none there" >&2
  exit 2
fi

if [ "$raft_only" -eq 1 ]; then
  echo "made the Raft link's certificates; keep $out/ca/ offline"
else
  echo "done: copy $out/<node>/ to $install_dir on each node and append its tls.conf to the node's settings; keep $out/ca/ offline"
fi
