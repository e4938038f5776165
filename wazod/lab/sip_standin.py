"""A tiny real SIP responder standing in for Asterisk in tests, the benchmark and the demo.

It answers every SIP request it receives over UDP (OPTIONS in practice) with
``SIP/2.0 200 OK``, copying Via, From, To, Call-ID and CSeq as RFC 3261 asks,
so the HA ``sip`` probe sees a live Asterisk; killing it is "Asterisk died on a
live host", which Wazo's ping-only check never noticed.

    python -m wazod.lab.sip_standin --host H --port P            # foreground
    python -m wazod.lab.sip_standin --host H --port P --pidfile F --daemon
    python -m wazod.lab.sip_standin --pidfile F --stop            # SIGTERM, wait
    python -m wazod.lab.sip_standin --pidfile F --status          # exit 0 if running

``--delay-file F``: each answer is sent as many seconds late as F says (a float;
missing or unreadable: at once): an overloaded Asterisk whose PJSIP answers
OPTIONS seconds late, changed while it runs.

``--daemon`` returns only once the socket is bound (so a "start" step that
succeeded really means "answering"), which is what the ``command`` services
backend needs.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import signal
import socket
import sys
import time

from wazod.fsutil import atomic_write_text

_COPIED = ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")


def build_response(request: bytes) -> bytes | None:
    """The 200 OK answering ``request``; None when it is not a SIP request (responses are ignored)."""
    try:
        text = request.decode("utf-8", errors="replace")
    except Exception:  # pragma: no cover - decode with replace cannot fail
        return None
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    if not lines or lines[0].startswith("SIP/2.0") or "SIP/2.0" not in lines[0]:
        return None
    kept = []
    for line in lines[1:]:
        name = line.split(":", 1)[0].strip().lower()
        if name in _COPIED:
            kept.append(line)
    out = ["SIP/2.0 200 OK", *kept, "Server: wazod-sip-standin", "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE",
           "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode()


def read_delay(path: str | None) -> float:
    """Seconds to hold each answer back (``--delay-file``); 0 without a readable, valid file."""
    if not path:
        return 0.0
    try:
        with open(path) as f:
            value = float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0
    return value if 0 <= value < 3600 else 0.0


def serve(sock: socket.socket, delay_file: str | None = None) -> None:
    stop = False
    later: list[tuple[float, int, bytes, tuple]] = []  # (due, n, reply, addr): answers held back
    n = 0

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        now = time.monotonic()
        while later and later[0][0] <= now:
            _due, _n, reply, addr = heapq.heappop(later)
            with contextlib.suppress(OSError):
                sock.sendto(reply, addr)
        sock.settimeout(min(0.5, max(0.001, later[0][0] - now)) if later else 0.5)
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        except OSError:
            if stop:
                break
            continue
        reply = build_response(data)
        if reply is None:
            continue
        delay = read_delay(delay_file)
        if delay > 0:
            n += 1
            heapq.heappush(later, (time.monotonic() + delay, n, reply, addr))
            continue
        with contextlib.suppress(OSError):
            sock.sendto(reply, addr)


def _read_pid(pidfile: str) -> int | None:
    try:
        return int(open(pidfile).read().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not reaped yet by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive; /proc tells
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("Z"):
                return False
    return True


def _status(pidfile: str) -> int:
    pid = _read_pid(pidfile)
    return 0 if pid and pid_alive(pid) else 3


def _stop(pidfile: str, timeout: float = 10.0) -> int:
    pid = _read_pid(pidfile)
    if not pid or not pid_alive(pid):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pidfile)
        return 0  # stopping a stopped service is a success (idempotent)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sip_standin", description="answer SIP requests over UDP with 200 OK")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5060)
    ap.add_argument("--pidfile")
    ap.add_argument("--daemon", action="store_true", help="run in the background once bound (needs --pidfile)")
    ap.add_argument("--stop", action="store_true", help="stop the instance of --pidfile")
    ap.add_argument("--status", action="store_true", help="exit 0 if the instance of --pidfile runs")
    ap.add_argument("--delay-file", help="file holding the seconds each answer is held back (read per request)")
    args = ap.parse_args(argv)
    if (args.daemon or args.stop or args.status) and not args.pidfile:
        ap.error("--daemon, --stop and --status need --pidfile")
    if args.status:
        return _status(args.pidfile)
    if args.stop:
        return _stop(args.pidfile)
    if args.daemon and _status(args.pidfile) == 0:
        return 0  # already running: starting is idempotent
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        print(f"sip_standin: cannot bind {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    if args.daemon:
        r, w = os.pipe()
        pid = os.fork()
        if pid:  # parent: wait for the child to have written its pidfile, then return
            os.close(w)
            os.read(r, 1)
            os.close(r)
            sock.close()
            return 0
        os.close(r)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        atomic_write_text(args.pidfile, f"{os.getpid()}\n")
        os.write(w, b"1")
        os.close(w)
        try:
            serve(sock, args.delay_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                if _read_pid(args.pidfile) == os.getpid():
                    os.unlink(args.pidfile)
        os._exit(0)
    if args.pidfile:
        atomic_write_text(args.pidfile, f"{os.getpid()}\n")
    serve(sock, args.delay_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
