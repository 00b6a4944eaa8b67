#!/usr/bin/env bash
# Installs what the lab needs on Debian/Ubuntu (as root): iproute2, arping,
# ndisc6, tcpdump, dnsmasq, miniupnpd (nftables build), miniupnpc, busybox,
# nftables, make; buildah and qemu-user-static for make image. Go must
# already be installed. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(gcc libc6-dev iproute2 iputils-ping iputils-arping ndisc6 tcpdump dnsmasq-base busybox nftables miniupnpd-nftables miniupnpc make bird2 frr buildah qemu-user-static)
need=()
for pkg in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	echo "installing ${need[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v kubectl >/dev/null || echo "note: kubectl is not on PATH; the lab's kubectl-driven tests and make demo need it" >&2
