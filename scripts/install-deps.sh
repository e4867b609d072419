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
install_packages() {
        [ -z "$missing" ] && return 0
        if [ "$(id -u)" -ne 0 ]; then
                echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
                exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        # shellcheck disable=SC2086
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
}

# azurite (Microsoft's Azure Blob emulator) for the Azure tests, exactly as package-lock.json says.
# It needs Node.js >= 20 (Debian 12's own nodejs is 18): without it the Azure tests skip, except
# under CI, where that is an error.
install_azurite() {
        top=$(cd "$(dirname "$0")/.." && pwd)
        [ -x "$top/node_modules/.bin/azurite-blob" ] && return 0
        major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
        if [ "$major" -lt 20 ] || ! command -v npm >/dev/null; then
                echo "install-deps: Node.js >= 20 with npm is needed for azurite (found: $(node --version 2>/dev/null || echo none))" >&2
                [ "${CI:-}" = true ] && exit 1
                return 0
        fi
        (cd "$top" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

install_packages
install_azurite
