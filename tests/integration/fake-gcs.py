#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A FAKE of Google Cloud Storage's XML API, for tests/integration/t-storage-gs.sh.

There is no GCS here: this is a small in-memory imitation (Python stdlib only) that
implements just what the gs:// backend (daemon/storage-gs.c) uses, path-style
(http://127.0.0.1:PORT/BUCKET/KEY), the way the XML API documents it:

  PUT    /B/K                         upload; "x-goog-if-generation-match: 0" = create only
                                      (412 PreconditionFailed when the object exists; any other
                                      number must equal the live generation); x-goog-meta-* kept
  GET    /B/K                         download; "Range: bytes=A-B" / "bytes=A-" -> 206, past the
                                      end -> 416 InvalidRange
  DELETE /B/K                         204, or 404 NoSuchKey
  GET    /B?list-type=2&prefix=&max-keys=&continuation-token=
                                      ListBucketResult (ListObjectsV2), keys in order
  POST   /B/K?uploads                 InitiateMultipartUploadResult
  PUT    /B/K?partNumber=N&uploadId=U part (1..10000), answers with its ETag
  POST   /B/K?uploadId=U              <CompleteMultipartUpload>: parts ascending, ETags must
                                      match, all but the last >= 5 MiB (EntityTooSmall)
  DELETE /B/K?uploadId=U              abort, 204

Every request needs "Authorization: Bearer TOKEN" with an accepted token, else 401
AuthenticationRequired. Errors are <Error><Code>..</Code><Message>..</Message></Error>.

Control (no authentication, loopback only):
  GET  /_fake/health                  "ok"
  POST /_fake/tokens                  body: the accepted tokens, one per line (replaces them)
  POST /_fake/config?part_delay_ms=N  delay every part PUT's answer by N ms
  GET  /_fake/state                   JSON: objects (key, size, sha256, generation, metadata),
                                      pending uploads, max_parts_in_flight, requests
  POST /_fake/reset-stats             zero max_parts_in_flight

--log FILE: one JSON line per request: method, path, query, status, and the headers the
backend is expected to send. The token itself is never logged: "auth" is "bearer:" and the
first 12 hex digits of its SHA-256, "missing" or "not-bearer".

Fidelity notes: buckets spring into existence (any name); no generations history, no
CRC32C/MD5 checks, no composite-object limits; real GCS answers a bad token with 401 too.

Usage: fake-gcs.py [--port N] --port-file FILE [--log FILE] [--token TOKEN]...
"""

import argparse
import hashlib
import http.server
import json
import os
import re
import signal
import socketserver
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

MIN_PART = 5 * 1024 * 1024

lock = threading.Lock()
objects = {}        # (bucket, key) -> dict(data, generation, meta, content_type, mtime)
uploads = {}        # upload id -> dict(bucket, key, parts {n: (data, etag)}, meta, content_type)
tokens = set()
config = {"part_delay_ms": 0}
stats = {"parts_in_flight": 0, "max_parts_in_flight": 0, "requests": 0}
next_gen = [1000]
next_upload = [1]
log_file = None


def fingerprint(token):
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gcs/1"

    def log_message(self, fmt, *args):
        pass

    # ---------------------------------------------------------------- plumbing
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def reply(self, status, data=b"", ctype="application/xml; charset=UTF-8", headers=None):
        self.status = status
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data or status not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message></Error>"
                            % (code, escape(message))).encode())

    def auth(self):
        a = self.headers.get("Authorization")
        if a is None:
            self.auth_seen = "missing"
        elif not a.startswith("Bearer "):
            self.auth_seen = "not-bearer"
        else:
            self.auth_seen = "bearer:" + fingerprint(a[7:])
            with lock:
                if a[7:] in tokens:
                    return True
        self.error(401, "AuthenticationRequired", "Authentication required.")
        return False

    def log(self):
        if not log_file:
            return
        h = {k.lower(): v for k, v in self.headers.items()
             if k.lower() in ("content-type", "range", "x-goog-if-generation-match", "x-goog-meta-sha256",
                              "content-length", "metadata-flavor")}
        rec = {"t": iso(time.time()), "method": self.command, "path": self.parsed.path,
               "query": self.parsed.query, "status": getattr(self, "status", 0),
               "auth": getattr(self, "auth_seen", "none"), "headers": h}
        with lock:
            log_file.write(json.dumps(rec, sort_keys=True) + "\n")
            log_file.flush()

    def handle_one(self):
        self.parsed = urllib.parse.urlsplit(self.path)
        self.q = urllib.parse.parse_qs(self.parsed.query, keep_blank_values=True)
        with lock:
            stats["requests"] += 1
        if self.parsed.path.startswith("/_fake/"):
            return self.control()
        parts = self.parsed.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        if not self.auth():
            self.body()
            return
        if not bucket:
            return self.error(400, "InvalidArgument", "no bucket")
        m = self.command
        if key == "":
            if m == "GET":
                return self.list(bucket)
            return self.error(405, "MethodNotAllowed", "bucket operations are not faked")
        if m == "POST" and "uploads" in self.q:
            return self.initiate(bucket, key)
        if m == "POST" and "uploadId" in self.q:
            return self.complete(bucket, key)
        if m == "PUT" and "partNumber" in self.q:
            return self.part(bucket, key)
        if m == "DELETE" and "uploadId" in self.q:
            return self.abort()
        if m == "PUT":
            return self.put(bucket, key)
        if m in ("GET", "HEAD"):
            return self.get(bucket, key)
        if m == "DELETE":
            return self.delete(bucket, key)
        return self.error(405, "MethodNotAllowed", m)

    def do_any(self):
        try:
            self.handle_one()
        finally:
            self.log()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any

    # ---------------------------------------------------------------- control
    def control(self):
        p = self.parsed.path
        if p == "/_fake/health":
            return self.reply(200, b"ok\n", "text/plain")
        if p == "/_fake/tokens" and self.command == "POST":
            new = {t.strip() for t in self.body().decode().splitlines() if t.strip()}
            with lock:
                tokens.clear()
                tokens.update(new)
            return self.reply(200, json.dumps({"tokens": len(new)}).encode(), "application/json")
        if p == "/_fake/config" and self.command == "POST":
            self.body()
            if "part_delay_ms" in self.q:
                config["part_delay_ms"] = int(self.q["part_delay_ms"][0])
            return self.reply(200, json.dumps(config).encode(), "application/json")
        if p == "/_fake/reset-stats" and self.command == "POST":
            self.body()
            with lock:
                stats["max_parts_in_flight"] = 0
            return self.reply(200, b"{}", "application/json")
        if p == "/_fake/state":
            with lock:
                st = {"objects": {"%s/%s" % k: {"size": len(o["data"]), "sha256": hashlib.sha256(o["data"]).hexdigest(),
                                                "generation": o["generation"], "metadata": o["meta"],
                                                "content_type": o["content_type"]}
                                  for k, o in objects.items()},
                      "uploads": len(uploads), "max_parts_in_flight": stats["max_parts_in_flight"],
                      "requests": stats["requests"]}
            return self.reply(200, json.dumps(st, sort_keys=True).encode(), "application/json")
        return self.reply(404, b'{"error": "unknown control call"}', "application/json")

    # ---------------------------------------------------------------- objects
    def meta(self):
        return {k.lower()[len("x-goog-meta-"):]: v for k, v in self.headers.items()
                if k.lower().startswith("x-goog-meta-")}

    def put(self, bucket, key):
        data = self.body()
        cond = self.headers.get("x-goog-if-generation-match")
        with lock:
            cur = objects.get((bucket, key))
            if cond is not None:
                if not cond.isdigit():
                    return self.error(400, "InvalidArgument", "bad x-goog-if-generation-match")
                want = int(cond)
                if (want == 0 and cur is not None) or (want != 0 and (cur is None or cur["generation"] != want)):
                    return self.error(412, "PreconditionFailed",
                                      "At least one of the pre-conditions you specified did not hold.")
            next_gen[0] += 1
            gen = next_gen[0]
            objects[(bucket, key)] = {"data": data, "generation": gen, "meta": self.meta(), "mtime": time.time(),
                                      "content_type": self.headers.get("Content-Type", "application/octet-stream")}
        self.reply(200, b"", headers={"ETag": '"%s"' % hashlib.md5(data).hexdigest(),
                                      "x-goog-generation": str(gen)})

    def get(self, bucket, key):
        with lock:
            o = objects.get((bucket, key))
        if o is None:
            return self.error(404, "NoSuchKey", "The specified key does not exist.")
        data, status, headers = o["data"], 200, {"x-goog-generation": str(o["generation"]),
                                                 "ETag": '"%s"' % hashlib.md5(o["data"]).hexdigest()}
        for k, v in o["meta"].items():
            headers["x-goog-meta-" + k] = v
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m:
                return self.error(400, "InvalidArgument", "bad Range")
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) else len(data) - 1
            if a >= len(data) or b < a:
                headers = {"Content-Range": "bytes */%d" % len(data)}
                return self.reply(416, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InvalidRange</Code>"
                                  b"<Message>The requested range cannot be satisfied.</Message></Error>",
                                  headers=headers)
            b = min(b, len(data) - 1)
            headers["Content-Range"] = "bytes %d-%d/%d" % (a, b, len(data))
            data, status = data[a:b + 1], 206
        self.reply(status, data, o["content_type"], headers)

    def delete(self, bucket, key):
        with lock:
            found = objects.pop((bucket, key), None)
        if found is None:
            return self.error(404, "NoSuchKey", "The specified key does not exist.")
        self.reply(204)

    def list(self, bucket):
        if self.q.get("list-type", [""])[0] != "2":
            return self.error(400, "InvalidArgument", "only list-type=2 is faked")
        prefix = self.q.get("prefix", [""])[0]
        max_keys = int(self.q.get("max-keys", ["1000"])[0] or 1000)
        after = self.q.get("continuation-token", [""])[0]
        with lock:
            keys = sorted((k, o) for (b, k), o in objects.items() if b == bucket and k.startswith(prefix))
        keys = [(k, o) for k, o in keys if not after or k > after]
        page, rest = keys[:max_keys], keys[max_keys:]
        out = ["<?xml version='1.0' encoding='UTF-8'?>",
               "<ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'>",
               "<Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys>"
               % (escape(bucket), escape(prefix), len(page), max_keys),
               "<IsTruncated>%s</IsTruncated>" % ("true" if rest else "false")]
        if rest:
            out.append("<NextContinuationToken>%s</NextContinuationToken>" % escape(page[-1][0]))
        for k, o in page:
            out.append("<Contents><Key>%s</Key><Generation>%d</Generation><LastModified>%s</LastModified>"
                       "<ETag>\"%s\"</ETag><Size>%d</Size></Contents>"
                       % (escape(k), o["generation"], iso(o["mtime"]), hashlib.md5(o["data"]).hexdigest(),
                          len(o["data"])))
        out.append("</ListBucketResult>")
        self.reply(200, "".join(out).encode())

    # ---------------------------------------------------------------- multipart
    def initiate(self, bucket, key):
        self.body()
        with lock:
            uid = "fake-upload-%d-%s" % (next_upload[0], hashlib.sha256(key.encode()).hexdigest()[:8])
            next_upload[0] += 1
            uploads[uid] = {"bucket": bucket, "key": key, "parts": {}, "meta": self.meta(),
                            "content_type": self.headers.get("Content-Type", "application/octet-stream")}
        self.reply(200, ("<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult "
                         "xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>%s</Bucket><Key>%s</Key>"
                         "<UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                         % (escape(bucket), escape(key), uid)).encode())

    def part(self, bucket, key):
        with lock:
            stats["parts_in_flight"] += 1
            stats["max_parts_in_flight"] = max(stats["max_parts_in_flight"], stats["parts_in_flight"])
        try:
            data = self.body()
            if config["part_delay_ms"] > 0:
                time.sleep(config["part_delay_ms"] / 1000.0)
            uid = self.q.get("uploadId", [""])[0]
            try:
                n = int(self.q["partNumber"][0])
            except ValueError:
                n = 0
            with lock:
                up = uploads.get(uid)
                if up is None or up["bucket"] != bucket or up["key"] != key:
                    return self.error(404, "NoSuchUpload", "The specified upload does not exist.")
                if not 1 <= n <= 10000:
                    return self.error(400, "InvalidArgument", "partNumber must be 1..10000")
                etag = '"%s"' % hashlib.md5(data).hexdigest()
                up["parts"][n] = (data, etag)
            self.reply(200, b"", headers={"ETag": etag})
        finally:
            with lock:
                stats["parts_in_flight"] -= 1

    def complete(self, bucket, key):
        raw = self.body()
        uid = self.q.get("uploadId", [""])[0]
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return self.error(400, "MalformedXML", "The XML you provided was not well-formed.")
        want = []
        for p in root:
            if p.tag.split("}")[-1] != "Part":
                continue
            fields = {c.tag.split("}")[-1]: (c.text or "") for c in p}
            want.append((int(fields.get("PartNumber", "0")), fields.get("ETag", "")))
        with lock:
            up = uploads.get(uid)
            if up is None or up["bucket"] != bucket or up["key"] != key:
                return self.error(404, "NoSuchUpload", "The specified upload does not exist.")
            if not want or [n for n, _ in want] != sorted({n for n, _ in want}):
                return self.error(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
            chunks = []
            for i, (n, etag) in enumerate(want):
                got = up["parts"].get(n)
                if got is None or got[1].strip('"') != etag.strip('"'):
                    return self.error(400, "InvalidPart", "One or more of the specified parts could not be found.")
                if i < len(want) - 1 and len(got[0]) < MIN_PART:
                    return self.error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum "
                                      "allowed object size.")
                chunks.append(got[0])
            data = b"".join(chunks)
            next_gen[0] += 1
            objects[(bucket, key)] = {"data": data, "generation": next_gen[0], "meta": up["meta"],
                                      "content_type": up["content_type"], "mtime": time.time()}
            del uploads[uid]
        self.reply(200, ("<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult "
                         "xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>%s</Bucket><Key>%s</Key>"
                         "<ETag>\"%s-%d\"</ETag></CompleteMultipartUploadResult>"
                         % (escape(bucket), escape(key), hashlib.md5(data).hexdigest(), len(want))).encode())

    def abort(self):
        self.body()
        with lock:
            found = uploads.pop(self.q.get("uploadId", [""])[0], None)
        if found is None:
            return self.error(404, "NoSuchUpload", "The specified upload does not exist.")
        self.reply(204)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global log_file
    ap = argparse.ArgumentParser(description="A fake of the GCS XML API (for tests; not GCS).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--token", action="append", default=[], help="an accepted bearer token (repeatable)")
    a = ap.parse_args()
    tokens.update(a.token)
    if a.log:
        log_file = open(a.log, "a", encoding="utf-8")
    srv = Server(("127.0.0.1", a.port), Handler)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv.serve_forever()
    try:
        os.unlink(a.port_file)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
