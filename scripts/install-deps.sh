#!/bin/sh
# Installs what building, testing and the demo need on Debian 12 (bookworm). Run as root.
set -eu

PKGS="build-essential autoconf automake libtool pkg-config
libsystemd-dev libcurl4-openssl-dev libcjson-dev libssl-dev libcmocka-dev libexpat1-dev
python3 curl socat systemd dbus
podman runc conmon catatonit busybox-static python3-dbusmock jq
ceph-mon ceph-osd radosgw awscli"

missing=""
for p in $PKGS; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
