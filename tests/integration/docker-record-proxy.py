#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A recording proxy for the Docker Engine API on unix sockets (Python stdlib only).

Listens on a unix socket and relays every connection, byte for byte and in both directions, to
the upstream unix socket (Podman's API service): streaming answers (logs?follow=1, /wait,
/events, chunked pulls) pass through as they come, keep-alive connections carry any number of
requests, and a half-close is passed on. The client's bytes are also parsed as HTTP/1.1 requests
(Content-Length or chunked bodies) and each request is appended to the log as one JSON line:

  {"t": UNIX_TIME, "conn": N, "seq": N, "method": "POST", "path": "/v1.41/containers/create?name=x",
   "headers": {"content-type": "application/json", ...}, "body": <parsed JSON, or the text, or null>}

Headers are lower-cased (last one wins); "body_raw" holds the text when it is not JSON.

Fault: --stall-path REGEX --stall-s N holds back the answer to a request whose path (with its
query) matches REGEX (re.search) for N seconds before relaying it (the request itself goes on at
once, so the engine acts on it: "the daemon never heard that its create worked");
--stall-when request holds the request instead. --stall-count K stalls only the first K matching
requests (0: all). A stalled request is logged with "stalled": true.

Fault: --empty-path REGEX [--empty-count K] answers a matching request itself, never passing it
on, with an empty log stream (200, Content-Length 0, then the connection closes): what an engine's
logs?follow=1 gives when its follow ends before the lines of a container that has just exited.
Logged with "emptied": true.

Usage: docker-record-proxy.py --listen PATH --upstream PATH --log FILE [--ready-file FILE]
                              [--stall-path RE --stall-s N [--stall-when answer|request] [--stall-count K]]
                              [--empty-path RE [--empty-count K]]
The ready file is written once the socket listens. Exits on SIGTERM or SIGINT.
"""

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time

log_lock = threading.Lock()
stall = empty = None  # Fault, set by main()
EMPTY_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
conn_counter = 0


def log_request(args, rec):
    line = json.dumps(rec, sort_keys=True)
    with log_lock:
        with open(args.log, "a") as f:
            f.write(line + "\n")
            f.flush()


class Fault:
    """Which requests a fault hits: those whose path (with its query) matches pattern, all of
    them (count 0) or only the first count."""

    def __init__(self, pattern, count):
        self.pattern = pattern
        self.left = count if count > 0 else None  # None: unlimited
        self.lock = threading.Lock()

    def take(self, path):
        """True when this request is hit (and counts it)."""
        if not self.pattern or not re.search(self.pattern, path):
            return False
        with self.lock:
            if self.left is None:
                return True
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class RequestParser:
    """Incremental HTTP/1.1 request parser over the client's byte stream. on_head(req) is called
    when a head is complete (it may set req["stalled"]); on_done(req) when the body is complete."""

    def __init__(self, on_head, on_done):
        self.buf = b""
        self.state = "head"
        self.req = None
        self.remaining = 0
        self.body = b""
        self.on_head = on_head
        self.on_done = on_done
        self.broken = False

    def feed(self, data):
        if self.broken:
            return
        self.buf += data
        try:
            while self._step():
                pass
        except Exception as e:  # never let a parse problem break the relay
            sys.stderr.write("proxy: cannot parse the request stream: %r\n" % (e,))
            self.broken = True

    def _step(self):
        if self.state == "head":
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return False
            head = self.buf[:i].decode("latin-1")
            self.buf = self.buf[i + 4:]
            lines = head.split("\r\n")
            while lines and lines[0] == "":  # stray CRLF between requests
                lines.pop(0)
            if not lines:
                return True
            parts = lines[0].split(" ")
            headers = {}
            for l in lines[1:]:
                if ":" in l:
                    k, v = l.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            self.req = {"method": parts[0], "path": parts[1] if len(parts) > 1 else "",
                        "headers": headers, "t": time.time()}
            self.body = b""
            self.on_head(self.req)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.state = "chunk-size"
            else:
                self.remaining = int(headers.get("content-length", "0") or 0)
                self.state = "body"
            return True
        if self.state == "body":
            n = min(self.remaining, len(self.buf))
            self.body += self.buf[:n]
            self.buf = self.buf[n:]
            self.remaining -= n
            if self.remaining > 0:
                return False
            self._finish()
            return True
        if self.state == "chunk-size":
            i = self.buf.find(b"\r\n")
            if i < 0:
                return False
            size = int(self.buf[:i].split(b";")[0].strip() or b"0", 16)
            self.buf = self.buf[i + 2:]
            if size == 0:
                self.state = "trailer"
            else:
                self.remaining = size + 2  # data + CRLF
                self.state = "chunk-data"
            return True
        if self.state == "chunk-data":
            n = min(self.remaining, len(self.buf))
            self.body += self.buf[:n]
            self.buf = self.buf[n:]
            self.remaining -= n
            if self.remaining > 0:
                return False
            self.body = self.body[:-2]  # the chunk's CRLF
            self.state = "chunk-size"
            return True
        if self.state == "trailer":
            i = self.buf.find(b"\r\n")
            if i < 0:
                return False
            line = self.buf[:i]
            self.buf = self.buf[i + 2:]
            if line == b"":
                self._finish()
            return True
        return False

    def _finish(self):
        req = self.req
        body = self.body
        if body:
            text = body.decode("utf-8", "replace")
            try:
                req["body"] = json.loads(text)
            except ValueError:
                req["body"] = None
                req["body_raw"] = text
        else:
            req["body"] = None
        self.req = None
        self.state = "head"
        self.on_done(req)


def relay_connection(args, client, conn_id):
    try:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(args.upstream)
    except OSError as e:
        sys.stderr.write("proxy: cannot connect upstream %s: %s\n" % (args.upstream, e))
        client.close()
        return

    # Clients here never pipeline: a client sends its next request only after it has the whole
    # previous answer, so once a request's head is seen every byte the upstream sends next
    # belongs to that request's answer. A stall is armed when the head of a matching request is
    # parsed (before its bytes go upstream) and spent before the first byte of the answer.
    stall_armed = threading.Event()
    seq = [0]
    emptied = [False]

    def on_head(req):
        seq[0] += 1
        req["conn"] = conn_id
        req["seq"] = seq[0]
        if empty.take(req["path"]):
            req["emptied"] = True
            emptied[0] = True
            return
        if stall.take(req["path"]):
            req["stalled"] = True
            if args.stall_when == "request":
                time.sleep(args.stall_s)
            else:
                stall_armed.set()

    def on_done(req):
        log_request(args, req)

    parser = RequestParser(on_head, on_done)

    def client_to_upstream():
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                parser.feed(data)  # before forwarding: a stall must be armed before the answer
                if emptied[0]:
                    client.sendall(EMPTY_ANSWER)
                    break
                upstream.sendall(data)
        except OSError:
            pass
        try:
            upstream.shutdown(socket.SHUT_RDWR if emptied[0] else socket.SHUT_WR)
        except OSError:
            pass
        if emptied[0]:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def upstream_to_client():
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if stall_armed.is_set():
                    # An interim "100 Continue" (Expect) is not the answer: pass it on at once.
                    if data.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in data:
                        i = data.index(b"\r\n\r\n") + 4
                        client.sendall(data[:i])
                        data = data[i:]
                        if not data:
                            continue
                    stall_armed.clear()
                    time.sleep(args.stall_s)
                client.sendall(data)
        except OSError:
            pass
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t1 = threading.Thread(target=client_to_upstream, daemon=True)
    t2 = threading.Thread(target=upstream_to_client, daemon=True)
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    client.close()
    upstream.close()


def main():
    global stall, empty, conn_counter
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready-file")
    ap.add_argument("--stall-path")
    ap.add_argument("--stall-s", type=float, default=0.0)
    ap.add_argument("--stall-when", choices=("answer", "request"), default="answer")
    ap.add_argument("--stall-count", type=int, default=0)
    ap.add_argument("--empty-path")
    ap.add_argument("--empty-count", type=int, default=0)
    args = ap.parse_args()
    stall = Fault(args.stall_path, args.stall_count)
    empty = Fault(args.empty_path, args.empty_count)

    try:
        os.unlink(args.listen)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.listen)
    os.chmod(args.listen, 0o666)
    srv.listen(64)

    def stop(signum, frame):
        try:
            os.unlink(args.listen)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(tmp, args.ready_file)

    while True:
        client, _ = srv.accept()
        conn_counter += 1
        threading.Thread(target=relay_connection, args=(args, client, conn_counter), daemon=True).start()


if __name__ == "__main__":
    main()
