#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A small HTTP server for tests/integration/t-http.sh (Python stdlib only).

Serves the same handler on a free TCP port on 127.0.0.1 and on a unix socket:

  /ok                     200, body "hello via tcp\n" (or "via unix")
  /big?n=BYTES            200 with BYTES bytes of "x"
  /status/CODE            that status, body "status CODE\n"
  /flaky?id=X&fail=N      503 the first N times for id X, then 200 (counts kept per id)
  /retry-after?id=X       429 with "Retry-After: 1" the first time for id X, then 200
  /count?id=X             200, body: how many requests /flaky or /retry-after saw for id X
  /slow?ms=N              200 after N milliseconds
  /echo-headers           200, body: "METHOD PATH", the request headers one per line
                          ("Name: value"), an empty line, then the request body
  /hang                   reads the request and never answers (until the server stops)
  /reset                  reads the request and closes the connection without an answer
                          (with SO_LINGER 0 on TCP, so the peer sees a reset)

Usage: http-test-server.py --port-file FILE [--unix PATH] [--blackhole-file FILE]
The port is written to FILE (atomically, via rename) once both sockets listen. With
--blackhole-file, a further loopback port is written there whose listen queue is full and
never accepted from: connecting to it hangs (the kernel drops the SYNs), for connect timeouts.
Exits on SIGTERM or SIGINT.
"""

import argparse
import http.server
import os
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import urllib.parse

counts = {}
counts_lock = threading.Lock()
stopping = threading.Event()


def bump(key):
    with counts_lock:
        counts[key] = counts.get(key, 0) + 1
        return counts[key]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "trainsupd-test/1"

    def log_message(self, fmt, *args):  # quiet; unix peers have no address anyway
        pass

    def address_string(self):
        return "unix" if self.server.transport == "unix" else self.client_address[0]

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, code, body=b"", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        body = self._read_body()

        if path == "/ok":
            return self._send(200, "hello via %s\n" % self.server.transport)
        if path == "/big":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            left = n
            try:
                while left > 0:
                    k = min(left, len(chunk))
                    self.wfile.write(chunk[:k])
                    left -= k
            except OSError:
                self.close_connection = True  # the client gave up (e.g. body too large)
            return None
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            return self._send(code, "status %d\n" % code)
        if path == "/flaky":
            n = bump("flaky:" + q.get("id", ""))
            if n <= int(q.get("fail", "1")):
                return self._send(503, "flaky attempt %d\n" % n)
            return self._send(200, "flaky ok after %d\n" % n)
        if path == "/retry-after":
            n = bump("retry-after:" + q.get("id", ""))
            if n == 1:
                return self._send(429, "slow down\n", [("Retry-After", "1")])
            return self._send(200, "retry-after ok after %d\n" % n)
        if path == "/count":
            i = q.get("id", "")
            with counts_lock:
                n = counts.get("flaky:" + i, 0) + counts.get("retry-after:" + i, 0)
            return self._send(200, "%d\n" % n)
        if path == "/slow":
            ms = int(q.get("ms", "1000"))
            if stopping.wait(ms / 1000.0):
                return None
            try:
                return self._send(200, "slow %d\n" % ms)
            except OSError:
                self.close_connection = True
                return None
        if path == "/echo-headers":
            lines = ["%s %s" % (self.command, self.path)]
            lines += ["%s: %s" % (k, v) for k, v in self.headers.items()]
            out = ("\n".join(lines) + "\n\n").encode() + body
            return self._send(200, out)
        if path == "/hang":
            stopping.wait(120)
            self.close_connection = True
            return None
        if path == "/reset":
            if self.server.transport == "tcp":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            # Close the socket itself now; the streams on top of it go with it.
            try:
                self.rfile.close()
                self.wfile.close()
            except OSError:
                pass
            self.connection.close()
            return None
        return self._send(404, "no such path %s\n" % path)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            self.close_connection = True

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _dispatch


class TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    transport = "tcp"

    def handle_error(self, request, client_address):
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    transport = "unix"

    def handle_error(self, request, client_address):
        pass

    def shutdown_request(self, request):
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        request.close()


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--unix")
    ap.add_argument("--blackhole-file")
    args = ap.parse_args()

    if args.blackhole_file:
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        fillers = []
        for _ in range(3):  # backlog 0 queues one connection; later SYNs are dropped
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(blackhole.getsockname())
            fillers.append(f)
        select.select([], [fillers[0]], [], 2.0)
        write_atomically(args.blackhole_file, "%d\n" % blackhole.getsockname()[1])

    servers = [TCPServer(("127.0.0.1", 0), Handler)]
    if args.unix:
        try:
            os.unlink(args.unix)
        except FileNotFoundError:
            pass
        servers.append(UnixServer(args.unix, Handler))

    done = threading.Event()

    def on_signal(signo, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
               for s in servers]
    for t in threads:
        t.start()

    write_atomically(args.port_file, "%d\n" % servers[0].server_address[1])

    while not done.wait(0.5):
        pass
    stopping.set()
    for s in servers:
        s.shutdown()
        s.server_close()
    if args.unix:
        try:
            os.unlink(args.unix)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
