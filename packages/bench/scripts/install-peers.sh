#!/usr/bin/env bash
# Installs what `npm run bench` compares nodenet with, when missing: the CNI reference plugins
# (containernetworking-plugins: /usr/lib/cni/{bridge,host-local,portmap}), netavark (/usr/lib/podman/netavark)
# and iperf3 (datapath throughput). Debian/Ubuntu, as root. Safe to run again.
set -euo pipefail

packages=(containernetworking-plugins netavark iperf3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-peers: ${packages[*]} already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-peers: ${missing[*]} missing; run this script as root (it uses apt-get)" >&2
  exit 1
fi
echo "install-peers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# No recommends: netavark recommends aardvark-dns, which the benchmark does not use (no DNS).
apt-get install -y -qq --no-install-recommends "${missing[@]}"
for f in /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/portmap /usr/lib/podman/netavark /usr/bin/iperf3; do
  [ -x "$f" ] || { echo "install-peers: $f is missing after the install" >&2; exit 1; }
done
echo "install-peers: done"
