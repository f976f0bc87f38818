#!/usr/bin/env bash
# A development CA and certificates for Packetwatch over TCP with mutual TLS:
#   deploy/certs.sh [DIR] [CERT...]
# writes DIR/ca.{crt,key} (once) and, for each CERT, DIR/<name>.{crt,key}.
# A CERT is a role (probe, policy or operator: the certificate is named after
# it) or NAME=ROLE (e.g. alice=operator); default: probe policy operator.
# The role is the certificate's OU, which the services authorize by: only a
# probe may report, only the policy may block on a probe, operators call the
# rest (SECURITY.md). Each is valid for localhost, 127.0.0.1, ::1 and the
# host's name, for both server and client use. For development and tests:
# production certificates come from your own PKI.
set -euo pipefail
dir=${1:-certs}
shift || true
certs=("$@")
[ ${#certs[@]} -gt 0 ] || certs=(probe policy operator)
for cert in "${certs[@]}"; do
  case "${cert#*=}" in
    probe | policy | operator) ;;
    *) echo "certs: '$cert': the role must be probe, policy or operator" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir"
umask 077

if [ ! -f "$dir/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=Packetwatch development CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
fi

for cert in "${certs[@]}"; do
  name=${cert%%=*}
  role=${cert#*=}
  ext=$(mktemp)
  printf 'subjectAltName=DNS:localhost,DNS:%s,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$(hostname)" >"$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=packetwatch-$name/OU=$role" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
done
chmod 0644 "$dir"/*.crt
echo "certs: CA and ${certs[*]} in $dir"
