#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Hostile clients for the daemon's control socket (Python stdlib only), for
tests/integration/t-control-hostile.sh.

Usage: hostile-client.py SCENARIO SOCKET_PATH [ARGS]

Every scenario prints "key=value" lines that the shell test checks; "status=ok" style keys
report whether a well-behaved status request (on a separate connection) was answered while
the hostile client was doing its thing. Scenarios:

  silent                connect, say nothing; meanwhile ask for status elsewhere; report when
                        the daemon dropped the silent connection (idle_closed_after=SECONDS)
  flood N               open N connections at once and keep them idle; report how many were
                        accepted and how many got TooManyClients or were closed; ask for status
                        while they are held and after they are closed
  bigmsg BYTES          send BYTES bytes without a NUL; report the error reply and the disconnect
  garbage               one connection per malformed request; report each error and disconnect
  noread N              send N status requests without reading any reply; meanwhile ask for
                        status elsewhere; report whether the daemon dropped the flooding client
  midclose N            N connections that close mid-message, before reading a reply, or at once
  halfclose N           N requests each followed by shutdown(SHUT_WR); count the replies

The protocol (daemon/control-proto.h): NUL-terminated JSON; a request is
{"method": "io.trainsupd.Status", "parameters": {...}}; a reply has "version": 1 and either
"parameters" or "error" (+ "message").
"""

import json
import select
import socket
import sys
import threading
import time

STATUS = b'{"method":"io.trainsupd.Status","parameters":{}}\0'


def connect(path, timeout=5.0):
    """A connected socket. A full listen backlog makes a unix connect() fail with EAGAIN
    instead of waiting: retry until the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
            continue
        except BaseException:
            s.close()
            raise
        s.settimeout(timeout)
        return s


_pending = {}  # socket -> bytes received after the last message returned


def read_message(s, timeout=5.0):
    """One NUL-terminated message: (message bytes or None, eof). eof: the daemon closed the
    connection (or reset it) before a whole message arrived. Bytes after the message are kept
    for the next call."""
    buf = _pending.pop(s, b"")
    deadline = time.monotonic() + timeout
    while b"\0" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            _pending[s] = buf
            return None, False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            _pending[s] = buf
            return None, False
        except (ConnectionResetError, BrokenPipeError):
            return (buf or None), True
        if not chunk:
            return (buf or None), True
        buf += chunk
    i = buf.index(b"\0")
    if buf[i + 1:]:
        _pending[s] = buf[i + 1:]
    return buf[:i], False


def wait_eof(s, timeout=5.0):
    """True when the daemon closes the connection within timeout (data before EOF is skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True


def parse(msg):
    try:
        d = json.loads(msg.decode())
    except Exception:
        return None
    return d if isinstance(d, dict) else None


def status_request(path, timeout=5.0):
    """'ok' when a fresh connection gets a status reply, else what happened instead."""
    try:
        s = connect(path, timeout)
    except OSError as e:
        return "connect-failed:%s" % type(e).__name__
    try:
        try:
            s.sendall(STATUS)
        except (BrokenPipeError, ConnectionResetError):
            pass  # turned away before we spoke: the reason may still be waiting to be read
        msg, eof = read_message(s, timeout)
    except OSError as e:
        return "failed:%s" % type(e).__name__
    finally:
        s.close()
    if msg is None:
        return "closed" if eof else "timeout"
    d = parse(msg)
    if d is None:
        return "garbage"
    if "error" in d:
        return "error:%s" % d["error"]
    if d.get("version") == 1 and isinstance(d.get("parameters"), dict) and "phase" in d["parameters"]:
        return "ok"
    return "unexpected"


def out(key, value):
    print("%s=%s" % (key, value), flush=True)


def scenario_silent(path):
    s = connect(path)
    t0 = time.monotonic()
    time.sleep(0.3)
    out("status_meanwhile", status_request(path))
    closed = wait_eof(s, 12.0)
    out("idle_closed", "yes" if closed else "no")
    out("idle_closed_after", "%.1f" % (time.monotonic() - t0))
    s.close()


def scenario_flood(path, n):
    n = int(n)
    conns = []
    for _ in range(n):
        conns.append(connect(path))
    # Accepted clients hear nothing; the others get TooManyClients and are closed. Wait until
    # every connection beyond the daemon's limit has been answered or closed (bounded).
    busy = set()
    closed = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        live = [c for c in conns if c not in closed]
        r, _, _ = select.select(live, [], [], 0.1)
        for c in r:
            try:
                data = c.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                closed.add(c)
                continue
            d = parse(data.split(b"\0")[0])
            if d and d.get("error") == "io.trainsupd.TooManyClients":
                busy.add(c)
        if len(closed) >= n - 16 and not r:
            break
    out("accepted", n - len(closed))
    out("rejected", len(closed))
    out("rejected_with_error", len(busy))
    # All slots taken: a status request must be turned away at once, not hang.
    t0 = time.monotonic()
    out("status_while_full", status_request(path, 3.0))
    out("status_while_full_fast", "yes" if time.monotonic() - t0 < 2.0 else "no")
    for c in conns:
        c.close()
    # Once they are gone the slots free up: poll (bounded) until status is answered.
    result = "never"
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        result = status_request(path, 2.0)
        if result == "ok":
            break
        time.sleep(0.05)
    out("status_after", result)


def sender(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


def scenario_bigmsg(path, nbytes):
    s = connect(path)
    # Sent from a thread: the daemon may stop reading before all of it is in.
    t = threading.Thread(target=sender, args=(s, b"a" * int(nbytes)), daemon=True)
    t.start()
    msg, eof = read_message(s, 5.0)
    d = parse(msg) if msg else None
    out("big_error", d.get("error") if d else ("none" if msg is None else "garbage"))
    out("big_closed", "yes" if eof or wait_eof(s, 5.0) else "no")
    s.close()
    t.join(2.0)


GARBAGE = [
    ("binary", b"\x01\x02\xff\xfe garbage \x00"),
    ("invalid_json", b'{"method": "io.trainsupd.Status"\0'),
    ("not_object", b"[1, 2, 3]\0"),
    ("string", b'"io.trainsupd.Status"\0'),
    ("method_number", b'{"method": 42}\0'),
    ("method_missing", b'{"parameters": {}}\0'),
    ("method_empty", b'{"method": ""}\0'),
    ("parameters_array", b'{"method": "io.trainsupd.Status", "parameters": [1]}\0'),
    ("empty", b"\0"),
]


def scenario_garbage(path):
    for name, data in GARBAGE:
        s = connect(path)
        s.sendall(data)
        msg, eof = read_message(s, 5.0)
        d = parse(msg) if msg else None
        err = d.get("error") if d else ("none" if msg is None else "garbage")
        closed = eof or wait_eof(s, 5.0)
        out("%s" % name, "%s closed=%s" % (err, "yes" if closed else "no"))
        s.close()
    # An unknown method is an error reply, and the connection stays usable.
    s = connect(path)
    s.sendall(b'{"method": "io.trainsupd.NoSuchMethod", "parameters": {}}\0')
    msg, eof = read_message(s, 5.0)
    d = parse(msg) if msg else None
    out("unknown_method", d.get("error") if d else "none")
    s.sendall(STATUS)
    msg, eof = read_message(s, 5.0)
    d = parse(msg) if msg else None
    out("after_unknown_method", "ok" if d and isinstance(d.get("parameters"), dict) else "none")
    s.close()
    # Several requests in one write, and a request split over many writes.
    s = connect(path)
    s.sendall(STATUS * 3)
    got = 0
    for _ in range(3):
        msg, eof = read_message(s, 5.0)
        d = parse(msg) if msg else None
        got += 1 if d and isinstance(d.get("parameters"), dict) else 0
    out("pipelined_replies", got)
    for b in STATUS:
        s.send(bytes([b]))
    msg, eof = read_message(s, 5.0)
    d = parse(msg) if msg else None
    out("bytewise_reply", "ok" if d and isinstance(d.get("parameters"), dict) else "none")
    s.close()


def scenario_noread(path, n):
    n = int(n)
    s = connect(path)
    s.setblocking(False)
    data = STATUS * n
    sent = 0
    dropped = False
    deadline = time.monotonic() + 5.0
    # Push requests (never reading) until all are sent or the daemon stops taking them.
    while sent < len(data) and time.monotonic() < deadline:
        _, w, _ = select.select([], [s], [], 0.2)
        if not w:
            break  # the daemon stopped reading us
        try:
            sent += s.send(data[sent: sent + 65536])
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
            break
    out("requests_sent", sent // len(STATUS))
    # The daemon keeps serving everyone else meanwhile.
    t0 = time.monotonic()
    out("status_meanwhile", status_request(path, 3.0))
    out("status_meanwhile_fast", "yes" if time.monotonic() - t0 < 2.0 else "no")
    # It must give up on us rather than buffer replies without bound: drain what it sent,
    # counting the replies, until it closes the connection.
    replies = 0
    closed = dropped
    deadline = time.monotonic() + 10.0
    while not closed and time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        replies += chunk.count(b"\0")
    out("noread_dropped", "yes" if closed else "no")
    out("replies_before_drop", replies)
    s.close()


def scenario_midclose(path, n):
    n = int(n)
    for i in range(n):
        s = connect(path)
        kind = i % 4
        try:
            if kind == 0:
                s.sendall(STATUS[: len(STATUS) // 2])  # half a message
            elif kind == 1:
                s.sendall(STATUS)  # a whole request, then go before the reply
            elif kind == 2:
                s.sendall(STATUS * 50)  # many requests, then go
            # kind 3: connect and close at once
        except OSError:
            pass
        s.close()
    out("midclose_done", n)
    out("status_after", status_request(path))


def scenario_halfclose(path, n):
    """A request followed by shutdown(SHUT_WR), as `socat`/`nc -N` do: the reply must still
    come before the daemon closes."""
    n = int(n)
    got = 0
    for _ in range(n):
        s = connect(path)
        s.sendall(STATUS)
        s.shutdown(socket.SHUT_WR)
        msg, eof = read_message(s, 5.0)
        d = parse(msg) if msg else None
        got += 1 if d and isinstance(d.get("parameters"), dict) else 0
        s.close()
    out("halfclose_replies", got)


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    name, path, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    fn = globals().get("scenario_" + name)
    if not fn:
        sys.stderr.write("unknown scenario %s\n" % name)
        return 2
    fn(path, *args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
