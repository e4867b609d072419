#!/bin/bash
# bake-image.sh - bake a minimal Debian guest image with trainsupd installed, its unit enabled.
#
# What it makes, in OUT (default ./image):
#   disk.raw     a raw ext4 filesystem (no partition table, no boot loader): the root file system
#   vmlinuz, initrd.img   the guest's kernel and initrd, booted directly by qemu (-kernel/-initrd)
#   boot.env     KERNEL/INITRD/APPEND for the boot command line
#   base/        the Debian part (mmdebstrap + the generic setup below), reused by the next bake
#                unless REBASE=1: re-baking after a trainsupd change takes seconds, not minutes
#
# What is in the image: Debian's packages only (systemd, udev, dbus, cloud-init, the kernel,
# curl and the libraries trainsupd links against); systemd-networkd doing DHCP on every en*/eth*
# NIC; cloud-init with only the datasources in DATASOURCES; then trainsupd built from SRC and
# installed with `make install` (binary, unit, journal catalog, logind drop-in, man pages,
# example config), the unit enabled. The image carries no /etc/trainsupd/trainsupd.json: the
# instance's user-data writes it (scripts/cloud-init/*.yaml). Until a config is there the unit
# is skipped (a drop-in adds ConditionPathExists=/etc/trainsupd/trainsupd.json), so an image
# booted without one shows a skipped unit, not a failed one. cloud-init's write_files runs in
# cloud-init.service, which is ordered before network-online.target and therefore before
# trainsupd: the daemon started at boot finds the file that the user-data wrote.
#
# Adapting it to bake your own cloud image: set DATASOURCES (e.g. "Ec2, None"), SMALL_INITRD=0
# and PRUNE_MODULES=0 (a real cloud needs NVMe/ENA/gVNIC/Hyper-V drivers in the initrd), add your
# packages (EXTRA_PACKAGES, comma-separated) and files (OVERLAY: a directory copied over the root,
# e.g. your training code under /opt), then convert disk.raw for your cloud (a partitioned disk
# with a boot loader: out of scope here; tools like debos or diskimage-builder do that part).
#
#   sudo scripts/bake-image.sh [OUT]
#
# Environment (defaults in brackets):
#   SRC [this repository]  trainsupd source; SRC_REV [worktree]: "worktree" = the files as they
#     are (tracked + untracked, not ignored), or a git revision such as HEAD (git archive)
#   BUILD [OUT/build]  out-of-tree build directory (configured --prefix=/usr --sysconfdir=/etc
#     --localstatedir=/var; reused, so only changed sources are rebuilt)
#   SUITE [bookworm] MIRROR [http://deb.debian.org/debian] SECMIRROR [http://deb.debian.org/debian-security]
#   SIZE [2G]  file system size (sparse)   HOSTNAME_ [trainsupd-vm]
#   DATASOURCES ["NoCloud, None"]   EXTRA_PACKAGES []   OVERLAY []   ENABLE [1]
#   SMALL_INITRD [1]  initrd with virtio_pci, virtio_blk, ext4 only (boots 3x faster under TCG)
#   PRUNE_MODULES [1]  drop kernel modules a virtio VM never loads (~325 MB)
#   ROOT_LOGIN [0]  1: passwordless root on the serial console (debugging only)
#   REBASE [0]  1: rebuild base/ from the Debian mirror even when it is there
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-image}")
SRC=${SRC:-$top}
SRC_REV=${SRC_REV:-worktree}
BUILD=${BUILD:-$OUT/build}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECMIRROR=${SECMIRROR:-http://deb.debian.org/debian-security}
SIZE=${SIZE:-2G}
HOSTNAME_=${HOSTNAME_:-trainsupd-vm}
DATASOURCES=${DATASOURCES:-NoCloud, None}
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
OVERLAY=${OVERLAY:-}
ENABLE=${ENABLE:-1}
SMALL_INITRD=${SMALL_INITRD:-1}
PRUNE_MODULES=${PRUNE_MODULES:-1}
ROOT_LOGIN=${ROOT_LOGIN:-0}
REBASE=${REBASE:-0}

log() { echo "[bake $(date +%T)] $*"; }
die() { echo "bake-image: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, chroot)"
for t in mmdebstrap mkfs.ext4 make autoreconf; do
        command -v "$t" >/dev/null || die "$t not found (apt-get install mmdebstrap e2fsprogs build-essential autoconf automake libtool pkg-config)"
done
mkdir -p "$OUT"
T0=$(date +%s)

# ------------------------------------------------------------------ 1. build trainsupd
log "building trainsupd from $SRC ($SRC_REV) in $BUILD"
mkdir -p "$BUILD"
if [ "$SRC_REV" = worktree ] && git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
        # tar keeps the files' times, so make rebuilds only what changed since the last bake
        (cd "$SRC" && git ls-files -z -co --exclude-standard | tar --null -T - -c) | tar -x -C "$BUILD"
elif [ "$SRC_REV" = worktree ]; then
        # not a git work tree (a release tarball): leave out what an in-tree build generated
        (cd "$SRC" && tar -c --exclude=./build --exclude=./node_modules --exclude=./.git --exclude=./tests/e2e/out \
                --exclude=Makefile --exclude=config.status --exclude=config.log --exclude=build-config.h \
                --exclude=stamp-h1 --exclude=.deps --exclude='*.o' --exclude='*.a' --exclude=autom4te.cache .) |
                tar -x -C "$BUILD"
else
        git -C "$SRC" archive "$SRC_REV" | tar -x -C "$BUILD"
fi
# configured here, for the image's paths (a BUILD configured otherwise is configured again)
if ! grep -qx 'prefix = /usr' "$BUILD/Makefile" 2>/dev/null || ! grep -qx 'sysconfdir = /etc' "$BUILD/Makefile"; then
        (cd "$BUILD" && autoreconf -fi && ./configure --prefix=/usr --sysconfdir=/etc --localstatedir=/var) \
                >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; die "configure failed (log: $OUT/build.log)"; }
fi
make -C "$BUILD" -j"$(nproc)" >>"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; die "build failed (log: $OUT/build.log)"; }

# ------------------------------------------------------------------ 2. the Debian base (cached)
B=$OUT/base
if [ "$REBASE" = 1 ] || [ ! -f "$B/.complete" ]; then
        rm -rf "$B" "$OUT/kernel"
        # cloud-init brings python3; trainsupd links libsystemd0 libcurl4 libcjson1 libssl3 libexpat1
        PKGS=systemd,systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,zstd,kmod,iproute2,curl
        PKGS=$PKGS,ca-certificates,netbase,procps,cloud-init,libsystemd0,libcurl4,libcjson1,libssl3,libexpat1
        [ -n "$EXTRA_PACKAGES" ] && PKGS=$PKGS,$EXTRA_PACKAGES
        log "mmdebstrap $SUITE ($PKGS)"
        mmdebstrap --mode=root --variant=minbase --include="$PKGS" \
                --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
                --dpkgopt='path-include=/usr/share/doc/*/copyright' \
                --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
                "$SUITE" "$B" "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
                "deb $SECMIRROR $SUITE-security main" >"$OUT/mmdebstrap.log" 2>&1 ||
                { tail -20 "$OUT/mmdebstrap.log"; die "mmdebstrap failed (log: $OUT/mmdebstrap.log)"; }
        KV=$(ls "$B/usr/lib/modules")

        echo 'LABEL=root / ext4 rw,errors=remount-ro 0 1' >"$B/etc/fstab"
        echo "$HOSTNAME_" >"$B/etc/hostname"
        printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$HOSTNAME_" >"$B/etc/hosts"
        # GCE's metadata name; harmless elsewhere, and no DNS is needed to reach it
        echo '169.254.169.254 metadata.google.internal' >>"$B/etc/hosts"
        # no resolver daemon in the image: the first DHCP server's DNS is not known in advance.
        # qemu's user network answers on 10.0.2.3 / its dns= address; clouds: install
        # systemd-resolved via EXTRA_PACKAGES.
        rm -f "$B/etc/resolv.conf"; : >"$B/etc/resolv.conf"
        mkdir -p "$B/etc/systemd/network"
        printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' >"$B/etc/systemd/network/80-dhcp.network"
        chroot "$B" systemctl -q enable systemd-networkd
        chroot "$B" systemctl -q mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
                fstrim.timer dpkg-db-backup.timer 2>/dev/null || true
        printf '9p\n9pnet_virtio\n' >"$B/etc/modules-load.d/9p.conf"   # file:// stores on a 9p share
        if [ "$SMALL_INITRD" = 1 ]; then
                echo 'MODULES=list' >"$B/etc/initramfs-tools/conf.d/zz-small.conf"
                printf 'virtio_pci\nvirtio_blk\next4\n' >>"$B/etc/initramfs-tools/modules"
        fi
        if [ "$PRUNE_MODULES" = 1 ]; then
                M=$B/usr/lib/modules/$KV/kernel
                rm -rf "$M"/sound "$M"/drivers/{gpu,media,infiniband,usb,iio,staging,hwmon,hid,platform,comedi,isdn,bluetooth,mtd,thunderbolt,spi,i2c,mfd,power,leds,nfc,mmc,pcmcia,atm,fpga,memstick,regulator,w1,video,misc,target,nvme,edac,gnss,ntb,pinctrl,gpio} \
                        "$M"/drivers/net/{wireless,ethernet,can,usb,wwan,ieee802154,hamradio,fddi,arcnet,plip,ppp,slip,wan,ipa} \
                        "$M"/net/{bluetooth,wireless,mac80211,mac802154,ieee802154,nfc,can,sunrpc,ceph,rxrpc,tipc,rds,sctp,dccp,l2tp,batman-adv,openvswitch,netrom,rose,ax25,appletalk,atm,caif,phonet,lapb,x25,6lowpan,qrtr,smc,mpls} \
                        "$M"/fs/{nfs,nfsd,ocfs2,gfs2,xfs,btrfs,f2fs,cifs,smb,ksmbd,ceph,nilfs2,jfs,reiserfs,ubifs,orangefs,dlm,afs,coda,ntfs3,ntfs,udf,hfs,hfsplus,erofs,lockd,nfs_common,cachefiles}
                chroot "$B" depmod -a "$KV"
        fi
        chroot "$B" update-initramfs -u -k "$KV" >/dev/null 2>&1
        mkdir -p "$OUT/kernel"
        cp "$B/boot/vmlinuz-$KV" "$OUT/kernel/vmlinuz"
        cp "$B/boot/initrd.img-$KV" "$OUT/kernel/initrd.img"
        rm -f "$B"/boot/vmlinuz-* "$B"/boot/initrd.img-* "$B"/vmlinuz* "$B"/initrd.img*
        rm -rf "$B"/var/cache/apt/*.bin "$B"/var/lib/apt/lists/*
        touch "$B/.complete"
        log "base ready after $(( $(date +%s) - T0 ))s"
else
        log "reusing $B (REBASE=1 rebuilds it)"
fi

# ------------------------------------------------------------------ 3. the image: base + trainsupd
R=$OUT/rootfs
rm -rf "$R"
cp -a "$B" "$R"
rm -f "$R/.complete"
make -C "$BUILD" install DESTDIR="$R" >>"$OUT/build.log" 2>&1 || die "make install failed (log: $OUT/build.log)"
chroot "$R" journalctl --update-catalog
# cloud-init: only the datasources wanted (written here, not in base/, so that changing
# DATASOURCES needs no REBASE); networking is networkd's; no locale generation (locales are
# stripped) and no ssh host keys (no sshd in a minimal image: "ssh_keys" given, and empty,
# means none are generated; an empty ssh_genkeytypes would fail cloud-init's schema)
cat >"$R/etc/cloud/cloud.cfg.d/90-trainsupd-image.cfg" <<EOF
datasource_list: [ $DATASOURCES ]
network: {config: disabled}
locale: "false"   # a string: the schema wants one; "false" skips the module
ssh_keys: {}
EOF
mkdir -p "$R/etc/systemd/system/trainsupd.service.d"
cat >"$R/etc/systemd/system/trainsupd.service.d/10-image.conf" <<'EOF'
# baked by scripts/bake-image.sh: the config comes with the instance (cloud-init user-data)
[Unit]
ConditionPathExists=/etc/trainsupd/trainsupd.json
EOF
[ "$ENABLE" = 1 ] && chroot "$R" systemctl -q enable trainsupd.service
[ "$ROOT_LOGIN" = 1 ] && chroot "$R" passwd -d root >/dev/null
if [ -n "$OVERLAY" ]; then
        log "overlay $OVERLAY"
        cp -a "$OVERLAY"/. "$R"/
fi
chroot "$R" /usr/sbin/trainsupd --version >/dev/null 2>&1 || chroot "$R" /usr/sbin/trainsupd --help >/dev/null 2>&1 ||
        die "the installed trainsupd does not run inside the image (missing libraries?)"

rm -f "$OUT/disk.raw.new"
truncate -s "$SIZE" "$OUT/disk.raw.new"
mkfs.ext4 -q -F -L root -d "$R" "$OUT/disk.raw.new"
mv "$OUT/disk.raw.new" "$OUT/disk.raw"
cp "$OUT/kernel/vmlinuz" "$OUT/kernel/initrd.img" "$OUT/"
cat >"$OUT/boot.env" <<EOF
KERNEL=$OUT/vmlinuz
INITRD=$OUT/initrd.img
APPEND='root=LABEL=root rw console=ttyS0 panic=-1'
EOF
rm -rf "$R"
log "image $OUT/disk.raw ($(du -h --apparent-size "$OUT/disk.raw" | cut -f1) sparse, $(du -h "$OUT/disk.raw" | cut -f1) used) in $(( $(date +%s) - T0 ))s"
