#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A stand-in for systemd's NOTIFY_SOCKET, for the integration tests (Python stdlib only).

Usage: notify-listen.py SOCKET_PATH OUTPUT_FILE

Binds an AF_UNIX SOCK_DGRAM socket at SOCKET_PATH (replacing a stale file there) and appends
every datagram it receives to OUTPUT_FILE, flushing after each one.

Output format: ONE ASSIGNMENT PER LINE. sd_notify() datagrams are newline-separated
"VAR=value" assignments; each assignment becomes one line of OUTPUT_FILE, in the order
received, so "STOPPING=1\\nSTATUS=Stopping." gives the two lines "STOPPING=1" and
"STATUS=Stopping.". Empty assignments are dropped; a datagram that is not valid UTF-8 is
written with backslash escapes. Tests grep for whole lines ("^READY=1$") and count them
(each WATCHDOG=1 ping is its own datagram, hence its own line).

Ready when SOCKET_PATH exists (it is bound before anything else happens). Exits 0 on SIGTERM
or SIGINT, removing SOCKET_PATH.
"""

import os
import signal
import socket
import sys


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    path, out_path = sys.argv[1], sys.argv[2]

    def on_signal(signo, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # Big enough for any sd_notify() message; ancillary data (credentials, fds) is ignored.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    with open(out_path, "a", encoding="utf-8") as out:
        tmp = path + ".tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        # Bind under a temporary name and rename, so the socket appears only once bound.
        sock.bind(tmp)
        os.rename(tmp, path)
        try:
            while True:
                data = sock.recv(1 << 16)
                text = data.decode("utf-8", errors="backslashreplace")
                for line in text.split("\n"):
                    if line:
                        out.write(line + "\n")
                out.flush()
        finally:
            sock.close()
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
