# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034 # variables are for the sourcing tests
#
# A throwaway single-node Ceph cluster with radosgw (a real S3 implementation: SigV4, payload
# hashes, multipart rules), for the S3 backend's tests. Source it after lib.sh, then call
# rgw_start. Everything lives under $T/ceph; the daemons run in the foreground (-f) as our
# children and are stopped by pid through lib.sh's cleanup. One mon (msgr v1 only, auth none),
# one memstore OSD (RAM: delete what you write), radosgw beast on a free loopback port.
#
# Sets: RGW_ENDPOINT (http://127.0.0.1:PORT), RGW_KEY, RGW_SECRET, RGW_BUCKET, RGW_REGION.
# Not root, or Ceph not installed: "1..0 # SKIP" and exit 0, unless CI=true (then a failure).

RGW_KEY=${RGW_KEY:-TRAINSUPDTESTKEY}
RGW_SECRET=${RGW_SECRET:-trainsupd-test-secret-0123456789}
RGW_BUCKET=${RGW_BUCKET:-ckpt}
RGW_REGION=us-east-1

rgw_requirements() {
        [ "$(id -u)" = 0 ] || skip_all RGW "not root"
        local c
        for c in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl; do
                command -v "$c" >/dev/null || skip_all RGW "$c not installed (apt-get install ceph-mon ceph-osd radosgw)"
        done
}

rgw_write_conf() {
        local d=$1 fsid=$2 mon_port=$3
        cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
run dir = $d/run
admin socket = $d/run/\$name.asok
log file = $d/log/\$name.log
pid file = $d/run/\$name.pid
keyring = $d/keyring
[mon]
mon data = $d/mon/ceph-\$id
[osd]
osd data = $d/osd/ceph-\$id
osd objectstore = memstore
memstore device bytes = $((${RGW_MEMSTORE_MB:-2048} * 1048576))
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $d/rgw
CONF
}

# _rgw_osd_up DIR ID: starts OSD ID and waits until the monitor counts it up. Ceph (16.2) has a
# start-up race under load: the OSD sends its first command before its monitor client has the
# cluster's fsid, the monitor answers "wrong fsid" and the OSD gives up its init. It is started
# again (its memstore from --mkfs is on disk) up to three times.
_rgw_osd_up() {
        local d=$1 id=$2 try i pid
        for try in 1 2 3; do
                ceph-osd -c "$d/ceph.conf" -f -i "$id" >/dev/null 2>>"$d/log/osd.stderr" &
                pid=$!
                track_pid "$pid"; _rgw_pids+=("$pid")
                for i in $(seq 1 80); do
                        timeout 10 ceph -c "$d/ceph.conf" osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && return 0
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.25
                done
                echo "OSD start $try: not up" >&2
                kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        done
        return 1
}

# _rgw_try_start DIR: one attempt at bringing a cluster up in DIR; on failure prints why and
# returns 1 (the daemons it started are in _rgw_pids).
_rgw_try_start() {
        local d=$1 fsid ou id c i mon_port C
        mkdir -p "$d/run" "$d/log" "$d/mon/ceph-a" "$d/osd/ceph-0" "$d/rgw"
        fsid=$(cat /proc/sys/kernel/random/uuid)
        mon_port=$(free_port)
        RGW_PORT=$(free_port)
        RGW_ENDPOINT=http://127.0.0.1:$RGW_PORT
        rgw_write_conf "$d" "$fsid" "$mon_port"
        C=(-c "$d/ceph.conf")
        ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null ||
                { echo "ceph-authtool failed"; return 1; }
        monmaptool --create --addv a "[v1:127.0.0.1:$mon_port]" --fsid "$fsid" "$d/monmap" >/dev/null ||
                { echo "monmaptool failed"; return 1; }
        ceph-mon "${C[@]}" --mkfs -i a --monmap "$d/monmap" --keyring "$d/keyring" || { echo "ceph-mon --mkfs failed"; return 1; }
        ceph-mon "${C[@]}" -f -i a 2>>"$d/log/mon.stderr" &
        track_pid $!; _rgw_pids+=($!)
        ou=$(cat /proc/sys/kernel/random/uuid)
        id=$(timeout 60 ceph "${C[@]}" osd new "$ou" 2>>"$d/log/ceph.stderr") || { echo "ceph osd new failed"; return 1; }
        ceph-osd "${C[@]}" -i "$id" --mkfs --osd-uuid "$ou" >/dev/null 2>&1 || { echo "ceph-osd --mkfs failed"; return 1; }
        _rgw_osd_up "$d" "$id" || { echo "the OSD did not come up: $(tail -n 1 "$d/log/osd.$id.log" 2>/dev/null)"; return 1; }
        radosgw "${C[@]}" -f -n client.rgw.a >/dev/null 2>>"$d/log/rgw.stderr" &
        track_pid $!; _rgw_pids+=($!)
        for i in $(seq 1 240); do
                c=$(curl -s -o /dev/null -w '%{http_code}' "$RGW_ENDPOINT/" || true)
                [ "$c" = 200 ] && break
                sleep 0.25
        done
        [ "$c" = 200 ] || { echo "radosgw did not answer: $(tail -5 "$d/log/client.rgw.a.log" 2>/dev/null)"; return 1; }
        timeout 60 radosgw-admin "${C[@]}" user create --uid=ckpt --display-name=ckpt \
                --access-key="$RGW_KEY" --secret="$RGW_SECRET" >/dev/null 2>&1 || { echo "radosgw-admin user create failed"; return 1; }
        for i in $(seq 1 40); do
                c=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:$RGW_REGION:s3" \
                        --user "$RGW_KEY:$RGW_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
                        "$RGW_ENDPOINT/$RGW_BUCKET")
                [ "$c" = 200 ] && break
                sleep 0.25
        done
        [ "$c" = 200 ] || { echo "creating bucket $RGW_BUCKET failed (HTTP $c)"; return 1; }
}

# rgw_start: brings a cluster up (≈20 s) or bails out. A single-node cluster on a busy machine
# sometimes does not come up (an OSD that never joins); the attempt is torn down and made again.
_rgw_pids=()
rgw_start() {
        local attempt why p
        rgw_requirements
        for attempt in 1 2 3; do
                _rgw_pids=()
                rm -rf "$T/ceph"
                _rgw_try_start "$T/ceph" >"$T/rgw-attempt.out" && return 0
                why=$(tail -n 1 "$T/rgw-attempt.out")
                diag "RGW attempt $attempt: $why" \
                        "cluster: $(timeout 10 ceph -c "$T/ceph/ceph.conf" -s 2>&1 | tr -s ' \n' ' ' | head -c 600)"
                cp -r "$T/ceph/log" "$T/rgw-attempt-$attempt-log" 2>/dev/null || true
                for p in "${_rgw_pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
        done
        bail_out "Ceph RGW did not come up in 3 attempts: $why"
}

# rgw_aws ARGS...: Debian's aws CLI against the cluster (another aws may come first in PATH).
rgw_aws() {
        env -u AWS_PROFILE -u AWS_CA_BUNDLE AWS_ACCESS_KEY_ID="$RGW_KEY" AWS_SECRET_ACCESS_KEY="$RGW_SECRET" \
                AWS_DEFAULT_REGION="$RGW_REGION" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
                /usr/bin/aws --endpoint-url "$RGW_ENDPOINT" "$@"
}
