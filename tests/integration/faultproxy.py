#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""faultproxy.py - an HTTP/1.1-aware TCP proxy on loopback that injects storage faults.

Sits between a client (trainsupd's CLI, the daemon) and an object store (Ceph RGW, azurite):
listens on a loopback port, forwards every request to UPSTREAM over a connection of its own
(one upstream connection per client connection, kept alive as long as both sides keep it),
and injects the faults real object stores and networks produce. Python standard library only,
one thread per client connection.

HTTP handled: keep-alive, Content-Length and chunked bodies (both directions, relayed as they
come, never spooled), `Expect: 100-continue` (passed through: the upstream's own 100 or final
answer goes back to the client; when the proxy answers itself, it never sends 100), HEAD and
1xx/204/304 answers without a body, answers delimited by the connection's close.

Faults (command-line flags; all changeable at run time, see "Control"). Each of slowdown,
reset, lost_answer and stall counts the requests its MATCH regex selects (matched against
"METHOD /path?query"; default: every request) and fires on every Nth of them (EVERY), at most
MAX times (default: no limit):

  --slowdown-every N       answer 503 instead of forwarding: `SlowDown` (an S3 <Error> XML body),
                           or with --flavor azure `ServerBusy` (Azure's <Error> body and
                           x-ms-error-code header), as the store under test would.
                           The request body is read and dropped first; with `Expect:
                           100-continue` the answer is sent at once (no 100) and the
                           connection closed, as S3 does.
  --reset-mid-body N       forward, then cut both connections (TCP RST) after N bytes of the
                           answer body (--reset-side response, default) or of the request body
                           (--reset-side request). A body shorter than N is not cut (logged as
                           "reset-skipped"). --reset-every K (default 1), --reset-match RE.
  --lost-answer-every N    "stored but the answer was lost": forward the request, read the
                           upstream's whole answer, then close the client connection without
                           sending a byte of it.
  --stall-s S              hold each matching request S seconds before forwarding it
  --stall-match RE         (--stall-every K). A stall ends early when the control changes the
                           stall settings (so a test can release what it held).
  --latency-ms MS          added before every request is forwarded
  --bandwidth-kbps K       both directions limited to K kilobits/s (1 kbit = 1000 bits), shared
                           by all connections (a link, not a per-connection cap)
  --log FILE               one JSON line per request: ts, n, conn, method, path, query, fault
                           (null or e.g. "slowdown", "reset-response", "reset-request",
                           "lost-answer", "stall", joined by "+"), status (what the client got,
                           null when nothing), upstream_status, req_bytes, resp_bytes (bodies),
                           ms, detail, auth, token_sha256. auth describes the Authorization
                           header without its secret parts: {"scheme"} plus, for AWS SigV4,
                           "scope" (date/region/service/aws4_request) and "signed" (the
                           SignedHeaders list); null without the header. token_sha256: the
                           first 16 hex digits of the SHA-256 of x-amz-security-token, or null.
                           Neither a signature, a key, a bearer token nor a session token is
                           ever logged.
  --flavor s3|azure        which store's error format the proxy's own answers use (default s3).

Control (loopback only, no authentication, like the rest):
  --control-file FILE      a JSON object of settings, merged in whenever the file changes
                           (checked every 0.2 s and before each request)
  HTTP on the proxy port itself, paths under /__faultproxy/ (never forwarded):
    GET  /__faultproxy/stats   counters and the current settings
    PUT  /__faultproxy/config  JSON object of settings, merged into the current ones
    POST /__faultproxy/reset   all faults off, counters to zero (flavor stays)
  Settings: slowdown_every, slowdown_match, slowdown_max, reset_bytes, reset_side, reset_every,
  reset_match, reset_max, lost_answer_every, lost_answer_match, lost_answer_max, stall_s,
  stall_every, stall_match, stall_max, latency_ms, bandwidth_kbps, flavor. null or 0 turns one off
  (reset_bytes: null turns it off, 0 cuts right after the head).
  Changing a fault's settings restarts its counter.

  --listen HOST:PORT (default 127.0.0.1:0, a free port) --port-file FILE (the port, written once
  listening) --upstream HOST:PORT (or http://HOST:PORT). Prints "faultproxy listening on
  HOST:PORT -> UPSTREAM" on stdout. SIGTERM/SIGINT: exits at once.
"""

import argparse
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import uuid

MAX_HEAD = 64 * 1024
IO_CHUNK = 64 * 1024
CONTROL_PREFIX = "/__faultproxy/"

FAULTS = ("slowdown", "reset", "lost_answer", "stall")
DEFAULTS = {
    "slowdown_every": 0, "slowdown_match": None, "slowdown_max": None,
    "reset_bytes": None, "reset_side": "response", "reset_every": 1, "reset_match": None, "reset_max": None,
    "lost_answer_every": 0, "lost_answer_match": None, "lost_answer_max": None,
    "stall_s": 0, "stall_every": 1, "stall_match": None, "stall_max": None,
    "latency_ms": 0, "bandwidth_kbps": 0, "flavor": "s3",
}


class Closed(Exception):
    """The peer closed (or reset) the connection."""


class ProtocolError(Exception):
    pass


class Cut(Exception):
    """A fault cut the exchange: the connections are gone."""


# ---------------------------------------------------------------- settings and counters

class State:
    def __init__(self, settings, log_path):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.settings = dict(DEFAULTS)
        self.seen = {f: 0 for f in FAULTS}
        self.fired = {f: 0 for f in FAULTS}
        self.generation = 0
        self.requests = 0
        self.by_fault = {}
        self.conns = 0
        self.log_file = open(log_path, "a", buffering=1) if log_path else None
        self.log_lock = threading.Lock()
        self.apply(settings)
        self.up_limiter = Limiter(self)
        self.down_limiter = Limiter(self)

    def apply(self, new):
        """Merges settings (caller need not hold the lock)."""
        with self.lock:
            for k, v in new.items():
                if k not in DEFAULTS:
                    raise ValueError("unknown setting %r" % k)
                if k.endswith("_match") and v is not None:
                    re.compile(v)
                if k == "reset_side" and v not in ("request", "response"):
                    raise ValueError("reset_side must be request or response")
                if k == "flavor" and v not in (None, "s3", "azure"):
                    raise ValueError("flavor must be s3 or azure")
            touched = set()
            for k, v in new.items():
                self.settings[k] = DEFAULTS[k] if v is None and k in ("reset_side", "flavor") else v
                for f in FAULTS:
                    if k.startswith(f + "_"):
                        touched.add(f)
            for f in touched:
                self.seen[f] = 0
                self.fired[f] = 0
            self.generation += 1
            self.changed.notify_all()

    def reset(self):
        with self.lock:
            flavor = self.settings["flavor"]  # not a fault: what the store behind is
            self.settings = dict(DEFAULTS, flavor=flavor)
            self.seen = {f: 0 for f in FAULTS}
            self.fired = {f: 0 for f in FAULTS}
            self.requests = 0
            self.by_fault = {}
            self.generation += 1
            self.changed.notify_all()

    def _every(self, f):
        s = self.settings
        if f == "reset":
            return (s["reset_every"] or 1) if s["reset_bytes"] is not None else 0
        if f == "stall":
            return (s["stall_every"] or 1) if s["stall_s"] else 0
        return s[f + "_every"] or 0

    def decide(self, line):
        """Counts a request ("METHOD /path?query"); returns (number, set of faults to apply, settings)."""
        with self.lock:
            self.requests += 1
            n = self.requests
            chosen = set()
            for f in FAULTS:
                every = self._every(f)
                if not every:
                    continue
                m = self.settings[f + "_match"]
                if m and not re.search(m, line):
                    continue
                self.seen[f] += 1
                if self.seen[f] % every != 0:
                    continue
                mx = self.settings[f + "_max"]
                if mx is not None and self.fired[f] >= mx:
                    continue
                self.fired[f] += 1
                chosen.add(f)
            return n, chosen, dict(self.settings)

    def stall(self, seconds):
        """Waits up to seconds; returns early when the stall settings change."""
        deadline = time.monotonic() + seconds
        with self.lock:
            gen = self.generation
            key = (self.settings["stall_s"], self.settings["stall_match"], self.settings["stall_every"])
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
                if self.generation != gen:
                    gen = self.generation
                    if (self.settings["stall_s"], self.settings["stall_match"], self.settings["stall_every"]) != key:
                        return True

    def count_fault(self, name):
        with self.lock:
            self.by_fault[name] = self.by_fault.get(name, 0) + 1

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "connections": self.conns, "faults": dict(self.by_fault),
                    "seen": dict(self.seen), "fired": dict(self.fired), "settings": dict(self.settings)}

    def log(self, rec):
        if rec.get("fault"):
            self.count_fault(rec["fault"])
        if not self.log_file:
            return
        line = json.dumps(rec, sort_keys=False)
        with self.log_lock:
            self.log_file.write(line + "\n")


class Limiter:
    """A shared rate limit for one direction (a link's bandwidth)."""

    def __init__(self, state):
        self.state = state
        self.lock = threading.Lock()
        self.next_free = 0.0

    def take(self, nbytes):
        kbps = self.state.settings.get("bandwidth_kbps") or 0
        if kbps <= 0 or nbytes <= 0:
            return
        dur = nbytes * 8.0 / (kbps * 1000.0)
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + dur
        wait = start + dur - now
        if wait > 0.002:
            time.sleep(wait)


# ---------------------------------------------------------------- buffered socket

class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        try:
            d = self.sock.recv(IO_CHUNK)
        except (ConnectionResetError, BrokenPipeError, OSError) as e:
            raise Closed(str(e))
        if not d:
            raise Closed("EOF")
        self.buf += d

    def read_head(self, at_start=True):
        """Bytes up to and including the blank line; Closed on a clean EOF before any byte."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
                return head
            if len(self.buf) > MAX_HEAD:
                raise ProtocolError("header section too large")
            self.fill()

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return line
            if len(self.buf) > MAX_HEAD:
                raise ProtocolError("line too long")
            self.fill()

    def read_some(self, n):
        if not self.buf:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def alive(self):
        """False when the peer closed an idle connection (checked before reusing it)."""
        if self.buf:
            return False  # unsolicited bytes on an idle connection: do not trust it
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return True
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError, OSError) as e:
            raise Closed(str(e))

    def reset(self):
        """Abortive close: the peer sees a TCP RST."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_head(head, request):
    lines = head[:-4].decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 3 if request else len(first) < 2:
        raise ProtocolError("bad start line %r" % lines[0])
    headers = []
    for ln in lines[1:]:
        if ":" not in ln:
            raise ProtocolError("bad header line %r" % ln)
        k, v = ln.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return first, headers


def hget(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def build_head(start, headers):
    return (start + "\r\n" + "".join("%s: %s\r\n" % (k, v) for k, v in headers) + "\r\n").encode("latin-1")


def body_framing(headers, request, method=None, status=None):
    """('none'|'length'|'chunked'|'close', length)."""
    if not request:
        if method == "HEAD" or (status is not None and (100 <= status < 200 or status in (204, 304))):
            return "none", 0
    te = hget(headers, "Transfer-Encoding")
    if te and "chunked" in te.lower():
        return "chunked", 0
    cl = hget(headers, "Content-Length")
    if cl is not None:
        try:
            n = int(cl)
        except ValueError:
            raise ProtocolError("bad Content-Length %r" % cl)
        return ("length", n) if n > 0 else ("none", 0)
    return ("none", 0) if request else ("close", 0)


def relay_body(src, framing, length, emit):
    """Reads a body framed as given from src and passes the wire bytes to emit(bytes).
    Returns the number of body bytes on the wire. emit may raise Cut."""
    total = 0
    if framing == "none":
        return 0
    if framing == "length":
        left = length
        while left > 0:
            d = src.read_some(min(left, 16384))
            left -= len(d)
            total += len(d)
            emit(d)
        return total
    if framing == "close":
        while True:
            try:
                d = src.read_some(16384)
            except Closed:
                return total
            total += len(d)
            emit(d)
    # chunked: relay the framing as it is
    while True:
        line = src.read_line()
        total += len(line)
        emit(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size line %r" % line)
        if size == 0:
            while True:  # trailers, then the blank line
                t = src.read_line()
                total += len(t)
                emit(t)
                if t == b"\r\n":
                    return total
        left = size + 2
        while left > 0:
            d = src.read_some(min(left, 16384))
            left -= len(d)
            total += len(d)
            emit(d)


def s3_error(status, code, message, close):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            "<RequestId>faultproxy-%s</RequestId></Error>" % (code, message, uuid.uuid4().hex[:16])).encode()
    reason = {503: "Service Unavailable", 500: "Internal Server Error"}.get(status, "Error")
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
               ("x-faultproxy", code), ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))]
    if close:
        headers.append(("Connection", "close"))
    return build_head("HTTP/1.1 %d %s" % (status, reason), headers) + body


def azure_error(status, code, message, close):
    rid = str(uuid.uuid4())
    body = ('\ufeff<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s\nRequestId:%s\n'
            "Time:%s</Message></Error>" % (code, message, rid, time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime()))
            ).encode("utf-8")
    reason = {503: "The server is busy.", 500: "Internal Server Error"}.get(status, "Error")
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), ("x-ms-error-code", code),
               ("x-ms-request-id", rid), ("x-faultproxy", code),
               ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))]
    if close:
        headers.append(("Connection", "close"))
    return build_head("HTTP/1.1 %d %s" % (status, reason), headers) + body


def busy_error(settings, close):
    """The proxy's own 503, in the format of the store behind it."""
    if settings.get("flavor") == "azure":
        return azure_error(503, "ServerBusy", "The server is busy.", close)
    return s3_error(503, "SlowDown", "Please reduce your request rate.", close)


def describe_auth(headers):
    """(auth, token_sha256) for the log: what authenticated the request, never a secret."""
    tok = hget(headers, "x-amz-security-token")
    tok_hash = hashlib.sha256(tok.encode("latin-1")).hexdigest()[:16] if tok is not None else None
    a = hget(headers, "Authorization")
    if a is None:
        return None, tok_hash
    scheme, _, rest = a.partition(" ")
    auth = {"scheme": scheme}
    if scheme == "AWS4-HMAC-SHA256":
        for part in rest.split(","):
            k, _, v = part.strip().partition("=")
            if k == "Credential":
                auth["scope"] = v.split("/", 1)[1] if "/" in v else None
            elif k == "SignedHeaders":
                auth["signed"] = v.split(";")
    return auth, tok_hash


def wants_close(version, headers):
    c = (hget(headers, "Connection") or "").lower()
    if "close" in c:
        return True
    return version == "HTTP/1.0" and "keep-alive" not in c


# ---------------------------------------------------------------- one client connection

class Session:
    def __init__(self, proxy, sock, cid):
        self.p = proxy
        self.st = proxy.state
        self.client = Conn(sock)
        self.up = None
        self.cid = cid

    def upstream(self):
        if self.up is not None and not self.up.alive():
            self.drop_upstream()
        if self.up is None:
            try:
                s = socket.create_connection(self.p.upstream, timeout=None)
            except OSError as e:
                raise ConnectionRefusedError(str(e))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.up = Conn(s)
        return self.up

    def drop_upstream(self, rst=False):
        if self.up is not None:
            self.up.reset() if rst else self.up.close()
            self.up = None

    def run(self):
        try:
            while True:
                if not self.one():
                    break
        except (Closed, ProtocolError, Cut):
            pass
        except Exception as e:  # never kill the proxy for one connection
            sys.stderr.write("faultproxy: connection %d: %s: %s\n" % (self.cid, type(e).__name__, e))
        finally:
            self.client.close()
            self.drop_upstream()

    def control(self, method, target, headers):
        framing, length = body_framing(headers, True)
        chunks = []
        relay_body(self.client, framing, length, chunks.append)
        body = b"".join(chunks)
        if framing == "chunked":  # control clients send small JSON; undo the framing
            raw, out = body, b""
            while raw:
                ln, raw = raw.split(b"\r\n", 1)
                n = int(ln.split(b";")[0], 16)
                if n == 0:
                    break
                out, raw = out + raw[:n], raw[n + 2:]
            body = out
        status, answer = 200, None
        try:
            path = target.split("?", 1)[0]
            if path == CONTROL_PREFIX + "config" and method in ("PUT", "POST"):
                self.st.apply(json.loads(body or b"{}"))
            elif path == CONTROL_PREFIX + "reset" and method == "POST":
                self.st.reset()
            elif path == CONTROL_PREFIX + "stats" and method == "GET":
                pass
            else:
                status, answer = 404, {"error": "unknown control request %s %s" % (method, path)}
        except (ValueError, re.error) as e:
            status, answer = 400, {"error": str(e)}
        data = json.dumps(answer if answer is not None else self.st.stats(), indent=1).encode() + b"\n"
        self.client.send(build_head("HTTP/1.1 %d %s" % (status, "OK" if status == 200 else "Error"),
                                    [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]) + data)
        return True

    def one(self):
        """Handles one request; False when the client connection is done."""
        self.p.reload_control_file()
        try:
            head = self.client.read_head()
        except Closed:
            return False
        t0 = time.monotonic()
        (method, target, version), headers = parse_head(head, True)
        if target.startswith(CONTROL_PREFIX):
            return self.control(method, target, headers)
        path, _, query = target.partition("?")
        n, faults, s = self.st.decide("%s %s" % (method, target))
        rec = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%03dZ" % (int(time.time() * 1000) % 1000),
               "n": n, "conn": self.cid, "method": method, "path": path, "query": query, "fault": None,
               "status": None, "upstream_status": None, "req_bytes": 0, "resp_bytes": 0, "ms": 0, "detail": None}
        rec["auth"], rec["token_sha256"] = describe_auth(headers)
        applied = []

        def finish(ok=True):
            rec["fault"] = "+".join(applied) or None
            rec["ms"] = int((time.monotonic() - t0) * 1000)
            self.st.log(rec)
            return ok

        req_framing, req_len = body_framing(headers, True)
        expect = (hget(headers, "Expect") or "").lower() == "100-continue" and req_framing != "none"
        client_close = wants_close(version, headers)

        if "stall" in faults and s["stall_s"]:
            applied.append("stall")
            released = self.st.stall(float(s["stall_s"]))
            rec["detail"] = "stall released early" if released else "stalled %ss" % s["stall_s"]
        if s["latency_ms"]:
            time.sleep(float(s["latency_ms"]) / 1000.0)

        if "slowdown" in faults:
            applied.append("slowdown")
            if expect:
                # answer before the body, as S3 does; the body never comes: close after
                self.client.send(busy_error(s, True))
                rec["status"] = 503
                finish()
                return False
            try:
                rec["req_bytes"] = relay_body(self.client, req_framing, req_len, lambda d: None)
            except Closed:
                rec["detail"] = "client went away sending its body"
                return finish(False)
            self.client.send(busy_error(s, client_close))
            rec["status"] = 503
            finish()
            return not client_close

        reset_req = "reset" in faults and s["reset_side"] == "request"
        reset_resp = "reset" in faults and s["reset_side"] == "response"
        cut_at = int(s["reset_bytes"] or 0)
        lost = "lost_answer" in faults

        # forward the head (a fresh upstream connection when the old one went away)
        try:
            up = self.upstream()
            up.send(head)
        except Closed:
            self.drop_upstream()
            up = self.upstream()
            up.send(head)
        except ConnectionRefusedError as e:
            self.client.send(s3_error(502, "BadGateway", "faultproxy: upstream: %s" % e, True))
            rec["status"] = 502
            rec["detail"] = "upstream refused"
            return finish(False)

        # Expect: 100-continue: the upstream's interim answer decides whether the body comes
        early_final = None
        if expect:
            while True:
                rhead = up.read_head()
                (rv, rstatus, *_), rheaders = parse_head(rhead, False)
                rstatus = int(rstatus)
                if rstatus == 100:
                    self.client.send(rhead)
                    break
                if 100 < rstatus < 200:
                    self.client.send(rhead)
                    continue
                early_final = (rhead, rv, rstatus, rheaders)
                break

        if early_final is None and req_framing != "none":
            sent = [0]

            def up_emit(d):
                if reset_req and sent[0] + len(d) >= cut_at:
                    part = d[:max(cut_at - sent[0], 0)]
                    if part:
                        self.st.up_limiter.take(len(part))
                        up.send(part)
                    sent[0] += len(part)
                    raise Cut()
                self.st.up_limiter.take(len(d))
                up.send(d)
                sent[0] += len(d)

            try:
                rec["req_bytes"] = relay_body(self.client, req_framing, req_len, up_emit)
            except Cut:
                applied.append("reset-request")
                rec["req_bytes"] = sent[0]
                rec["detail"] = "reset after %d request body bytes" % sent[0]
                self.client.reset()
                self.drop_upstream(rst=True)
                finish()
                raise
            except Closed:
                rec["req_bytes"] = sent[0]
                rec["detail"] = "client or upstream went away during the request body"
                self.drop_upstream(rst=True)
                return finish(False)
            if reset_req:
                applied.append("reset-skipped")
                rec["detail"] = "request body shorter than %d bytes" % cut_at

        # the final answer
        if early_final is not None:
            rhead, rv, rstatus, rheaders = early_final
        else:
            while True:
                rhead = up.read_head()
                (rv, rstatus, *_), rheaders = parse_head(rhead, False)
                rstatus = int(rstatus)
                if rstatus < 200:
                    if not lost:
                        self.client.send(rhead)
                    continue
                break
        rec["upstream_status"] = rstatus
        rframing, rlen = body_framing(rheaders, False, method, rstatus)
        up_close = wants_close(rv, rheaders) or rframing == "close"

        if lost:
            applied.append("lost-answer")
            chunks = [0]

            def drop(d):
                chunks[0] += len(d)
            relay_body(up, rframing, rlen, drop)
            rec["resp_bytes"] = chunks[0]
            rec["detail"] = "upstream answered %d, client connection closed without an answer" % rstatus
            self.client.close()
            self.drop_upstream()
            finish()
            return False

        self.client.send(rhead)
        rec["status"] = rstatus
        got = [0]

        def down_emit(d):
            if reset_resp and got[0] + len(d) >= cut_at:
                part = d[:max(cut_at - got[0], 0)]
                if part:
                    self.st.down_limiter.take(len(part))
                    self.client.send(part)
                got[0] += len(part)
                raise Cut()
            self.st.down_limiter.take(len(d))
            self.client.send(d)
            got[0] += len(d)

        try:
            rec["resp_bytes"] = relay_body(up, rframing, rlen, down_emit)
        except Cut:
            applied.append("reset-response")
            rec["resp_bytes"] = got[0]
            rec["detail"] = "reset after %d answer body bytes" % got[0]
            self.client.reset()
            self.drop_upstream(rst=True)
            finish()
            raise
        except Closed:
            rec["resp_bytes"] = got[0]
            rec["detail"] = "client or upstream went away during the answer body"
            self.drop_upstream(rst=True)
            return finish(False)
        if reset_resp:
            applied.append("reset-skipped")
            rec["detail"] = "answer body shorter than %d bytes" % cut_at
        finish()
        if early_final is not None and req_framing != "none":
            # the body was never read: this connection cannot carry another request
            self.drop_upstream()
            return False
        if up_close:
            self.drop_upstream()
            return False
        return not client_close


# ---------------------------------------------------------------- the proxy

class Proxy:
    def __init__(self, listen, upstream, state, control_file):
        self.upstream = upstream
        self.state = state
        self.control_file = control_file
        self.control_mtime = None
        self.control_lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen)
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def reload_control_file(self):
        if not self.control_file:
            return
        with self.control_lock:
            try:
                st = os.stat(self.control_file)
            except FileNotFoundError:
                return
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if key == self.control_mtime:
                return
            try:
                with open(self.control_file) as f:
                    text = f.read()
                settings = json.loads(text) if text.strip() else {}
                self.state.apply(settings)
                self.control_mtime = key
            except (ValueError, OSError, re.error) as e:
                sys.stderr.write("faultproxy: ignoring %s: %s\n" % (self.control_file, e))
                self.control_mtime = key

    def watch_control_file(self):
        while True:
            time.sleep(0.2)
            self.reload_control_file()

    def serve(self):
        if self.control_file:
            threading.Thread(target=self.watch_control_file, daemon=True).start()
        cid = 0
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                continue
            cid += 1
            with self.state.lock:
                self.state.conns += 1
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=Session(self, s, cid).run, daemon=True).start()


def hostport(text, default_host="127.0.0.1"):
    text = re.sub(r"^https?://", "", text).rstrip("/")
    host, _, port = text.rpartition(":")
    return (host or default_host, int(port))


def main(argv):
    ap = argparse.ArgumentParser(description="HTTP-aware fault-injecting TCP proxy (see the module doc)")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--control-file")
    ap.add_argument("--slowdown-every", type=int, default=0)
    ap.add_argument("--slowdown-match")
    ap.add_argument("--slowdown-max", type=int)
    ap.add_argument("--reset-mid-body", type=int, dest="reset_bytes")
    ap.add_argument("--reset-side", choices=("request", "response"), default="response")
    ap.add_argument("--reset-every", type=int, default=1)
    ap.add_argument("--reset-match")
    ap.add_argument("--reset-max", type=int)
    ap.add_argument("--lost-answer-every", type=int, default=0)
    ap.add_argument("--lost-answer-match")
    ap.add_argument("--lost-answer-max", type=int)
    ap.add_argument("--stall-s", type=float, default=0)
    ap.add_argument("--stall-match")
    ap.add_argument("--stall-every", type=int, default=1)
    ap.add_argument("--stall-max", type=int)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--bandwidth-kbps", type=float, default=0)
    ap.add_argument("--flavor", choices=("s3", "azure"), default="s3")
    a = ap.parse_args(argv)
    settings = {k: getattr(a, k) for k in DEFAULTS}
    state = State(settings, a.log)
    proxy = Proxy(hostport(a.listen), hostport(a.upstream), state, a.control_file)
    proxy.reload_control_file()
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % proxy.port)
        os.rename(tmp, a.port_file)
    print("faultproxy listening on %s:%d -> %s:%d" % (hostport(a.listen)[0], proxy.port, *proxy.upstream), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    proxy.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
