# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034 # variables are for the sourcing tests
#
# azurite (the Azure Blob emulator, from the repository's package.json: `npm ci` puts it in
# node_modules/) for the Azure storage tests. Source it after lib.sh. This file installs nothing.
#
#   azurite_requirements          "1..0 # SKIP" (a failure when CI=true) without azurite or node
#   azurite_make_tls DIR          a throwaway CA (DIR/ca.pem) and a server certificate for
#                                 127.0.0.1 signed by it (DIR/server.pem, DIR/server.key)
#   azurite_start [--https DIR]   starts azurite on a free loopback port (with --https: TLS with
#                                 DIR's certificate and `--oauth basic`); sets AZ_PORT, AZ_PID,
#                                 AZ_ENDPOINT (path-style, e.g. http://127.0.0.1:PORT/devstoreaccount1)
#                                 and AZ_CA (the CA file, empty for http)
#   azc METHOD PATH [HDR:VAL...]  an independent SharedKey-signed request (Python's hmac/urllib),
#                                 body to stdout, HTTP status to $T/azc.status
#   az_create_container NAME      creates it (201) or bails out
#   az_jwt AUD ISS EXP_OFFSET_S   a JWT of the shape azurite's `--oauth basic` accepts (it checks
#                                 nbf/exp/iat, the issuer prefix and the audience; it does not
#                                 verify the signature), expiring EXP_OFFSET_S from now

AZURITE=${AZURITE:-$TOP_SRCDIR/node_modules/.bin/azurite-blob}
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==' # azurite's public dev key
AZ_CA=

azurite_requirements() {
        [ -x "$AZURITE" ] || skip_all azurite "azurite not installed (npm ci in $TOP_SRCDIR)"
        command -v node >/dev/null || skip_all azurite "node not installed"
        command -v curl >/dev/null || skip_all azurite "curl not installed"
}

azurite_make_tls() {
        local d=$1
        command -v openssl >/dev/null || skip_all azurite "openssl not installed"
        mkdir -p "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
                -subj "/CN=trainsupd test CA $$" -addext basicConstraints=critical,CA:TRUE \
                -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 || bail_out "openssl: cannot make the test CA"
        openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" -subj /CN=127.0.0.1 \
                >/dev/null 2>&1 || bail_out "openssl: cannot make the server key"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
                >"$d/server.ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -out "$d/server.pem" \
                -days 2 -extfile "$d/server.ext" >/dev/null 2>&1 || bail_out "openssl: cannot sign the server certificate"
}

cat >"$T/azc.py" <<'PY'
import base64, email.utils, hashlib, hmac, ssl, sys, urllib.error, urllib.parse, urllib.request
key, ep, ca, method, path = base64.b64decode(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3], sys.argv[4], sys.argv[5]
hdrs = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
for h in sys.argv[6:]:
    k, v = h.split(":", 1)
    hdrs[k] = v
url = ep + "/" + path
u = urllib.parse.urlsplit(url)
acct = urllib.parse.urlsplit(ep).path.strip("/").split("/")[0]
q = sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
canon = "/" + acct + u.path + "".join(f"\n{k.lower()}:{v}" for k, v in q)
std = ["Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type", "Date",
       "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range"]
sts = method + "\n" + "".join(hdrs.get(s, "") + "\n" for s in std) + "".join(
    f"{k.lower()}:{hdrs[k]}\n" for k in sorted(hdrs, key=str.lower) if k.lower().startswith("x-ms-")) + canon
sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
hdrs["Authorization"] = f"SharedKey {acct}:{sig}"
req = urllib.request.Request(url, method=method, headers=hdrs)
ctx = ssl.create_default_context(cafile=ca) if ca else None
try:
    r = urllib.request.urlopen(req, context=ctx)
except urllib.error.HTTPError as e:
    r = e
sys.stderr.write(f"{r.status}\n")
sys.stdout.buffer.write(r.read())
PY
azc() { "$PYTHON" "$T/azc.py" "$AZ_KEY" "$AZ_ENDPOINT" "$AZ_CA" "$@" 2>"$T/azc.status"; }

az_jwt() {
        "$PYTHON" - "$@" <<'PY'
import base64, json, sys, time
def b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
aud, iss, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
now = int(time.time())
print("%s.%s.%s" % (b64({"typ": "JWT", "alg": "RS256", "kid": "t"}),
                    b64({"aud": aud, "iss": iss, "iat": now + off - 7200, "nbf": now + off - 7200, "exp": now + off,
                         "oid": "00000000-0000-0000-0000-0000000000aa"}),
                    base64.urlsafe_b64encode(b"not a real signature: azurite does not check it").decode().rstrip("=")))
PY
}

azurite_start() {
        local tls='' scheme=http i args=()
        if [ "${1:-}" = --https ]; then
                tls=$2
                scheme=https
                AZ_CA=$tls/ca.pem
                args=(--cert "$tls/server.pem" --key "$tls/server.key" --oauth basic)
        fi
        AZ_PORT=$(free_port)
        AZ_ENDPOINT=$scheme://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT
        mkdir -p "$T/azurite"
        "$AZURITE" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" -l "$T/azurite" --loose --skipApiVersionCheck \
                --disableTelemetry "${args[@]}" >"$T/azurite.log" 2>&1 &
        AZ_PID=$!
        track_pid "$AZ_PID"
        for i in $(seq 1 150); do
                azc GET "?comp=list" >/dev/null 2>&1
                [ "$(cat "$T/azc.status" 2>/dev/null)" = 200 ] && return 0
                is_running "$AZ_PID" || break
                sleep 0.1
        done
        bail_out "azurite did not come up: $(tail -5 "$T/azurite.log")"
}

az_create_container() {
        azc PUT "$1?restype=container" >/dev/null
        [ "$(cat "$T/azc.status")" = 201 ] || bail_out "cannot create container $1: HTTP $(cat "$T/azc.status")"
}
