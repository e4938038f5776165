"""Logging: structlog, one JSON object per line on stdout for journald.

Each line starts with the syslog priority in angle brackets (``<6>{...}``):
systemd's journal reads that prefix (SyslogLevelPrefix=yes, the default) and
files the line at that level: 5 (notice) for the HA story (``notice=True``),
4 for failures. The object's first key, ``event``, is a short human message;
its details follow. On a terminal the output is readable instead.
Secrets are masked in every event dict, and tracebacks carry no frame locals.

Lines that repeat are collapsed (``RepeatLimiter``): a flood (asyncio's
``socket.accept() out of system resource`` once wrote 183 MB in a minute)
costs a few lines, and the next one after the pause says how many were dropped.
The standard library's loggers (asyncio, aiohttp) go through the same pipeline.

The daemon may also write the same JSON lines (without the prefix) to a log
file (``logging.file``): ``LogFile`` creates it 0640 root:adm and reopens the
path when logrotate has renamed it, so no signal or copytruncate is needed.
"""

from __future__ import annotations

import grp
import json as jsonlib
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from typing import Any

import structlog

from wazod.secrets import mask

_PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "warn": 4, "error": 3, "critical": 2,
             "exception": 3}


def _notice(_logger: Any, _name: str, event_dict: dict) -> dict:
    """``log.info(..., notice=True)``: journald priority 5, what ``journalctl -p notice`` shows.

    (structlog's levels are the stdlib's, which have no notice.)
    """
    if event_dict.pop("notice", False) and event_dict.get("level") == "info":
        event_dict["level"] = "notice"
    return event_dict


def _message_first(_logger: Any, _name: str, event_dict: dict) -> dict:
    """The human message (``event``) first in the JSON object, the details after it."""
    if "event" in event_dict:
        return {"event": event_dict.pop("event"), **event_dict}
    return event_dict


def _mask_processor(_logger: Any, _name: str, event_dict: dict) -> dict:
    return {k: (mask(v, k) if k not in ("event", "level", "timestamp") else (mask(v) if isinstance(v, str) else v))
            for k, v in event_dict.items()}


def _mask_exception(_logger: Any, _name: str, event_dict: dict) -> dict:
    """The rendered traceback is new text: mask it too (messages may quote a DSN)."""
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = mask(exc)
    return event_dict


class RepeatLimiter:
    """structlog processor: at most ``burst`` identical lines per ``window`` seconds.

    Identical = same level and fields (the timestamp and traceback aside). Past the
    burst, lines are dropped until the window ends; the first one after it carries
    ``repeated: N`` (N lines like it dropped). ``clock`` is injectable for tests.
    """

    IGNORED = frozenset({"timestamp", "exception", "exc_info", "stack_info"})

    def __init__(self, burst: int = 10, window: float = 60.0, clock=time.monotonic, max_keys: int = 1024):
        self.burst, self.window, self.clock, self.max_keys = burst, window, clock, max_keys
        self._seen: dict[str, list] = {}  # key -> [window start, lines in window, dropped]
        self._lock = threading.Lock()

    def _key(self, name: str, event_dict: dict) -> str:
        return repr((name, sorted((k, repr(v)) for k, v in event_dict.items() if k not in self.IGNORED)))

    def __call__(self, _logger: Any, name: str, event_dict: dict) -> dict:
        key = self._key(name, event_dict)
        with self._lock:
            now = self.clock()
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self.window:
                if seen is None and len(self._seen) >= self.max_keys:
                    self._forget(now)
                if seen is not None and seen[2]:
                    event_dict["repeated"] = seen[2]
                    event_dict["repeated_within_s"] = self.window
                self._seen[key] = [now, 1, 0]
                return event_dict
            seen[1] += 1
            if seen[1] < self.burst:
                return event_dict
            if seen[1] == self.burst:
                event_dict["repeats_dropped_for_s"] = round(self.window - (now - seen[0]), 1)
                return event_dict
            seen[2] += 1
        raise structlog.DropEvent

    def _forget(self, now: float) -> None:
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        if len(self._seen) >= self.max_keys:
            self._seen.clear()


class _ToStructlog(logging.Handler):
    """The standard library's records (asyncio, aiohttp) into structlog: same format, masking and repeat limit."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = record.levelname.lower()
            logger = structlog.get_logger(component=record.name)
            log_fn = getattr(logger, method if method in ("debug", "info", "warning", "error", "critical")
                             else "warning")
            kw = {"exc_info": record.exc_info} if record.exc_info else {}
            log_fn(record.getMessage(), **kw)
        except Exception:
            self.handleError(record)


def _route_stdlib_logging() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog(logging.WARNING))
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


class _PriorityJSONRenderer:
    """JSON line prefixed with ``<N>`` so journald files it at the right priority."""

    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer(sort_keys=False)

    def __call__(self, logger: Any, name: str, event_dict: dict) -> str:
        prio = _PRIORITY.get(str(event_dict.get("level", name)).lower(), 6)
        return f"<{prio}>" + self._json(logger, name, event_dict)


class _StdStream:
    """sys.stdout or sys.stderr looked up at each write, not once at configuration.

    A test harness (or a daemonizing wrapper) may replace the standard streams after
    logging is configured; a logger holding the old object would then write to a
    closed file.
    """

    def __init__(self, name: str):
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()

    def isatty(self) -> bool:
        stream = getattr(sys, self.name)
        return hasattr(stream, "isatty") and stream.isatty()


class LogFile(logging.handlers.WatchedFileHandler):
    """An append-only log file, reopened when its path no longer names the open file.

    The stdlib's WatchedFileHandler compares the path's inode with the open one's
    before each line: after logrotate renames the file, the next line creates a
    new one at the path. Creation is ours: mode 0640, group adm when root (the
    Debian convention for logs administrators read), and never through a symlink
    someone planted at the path.
    """

    MODE = 0o640
    GROUP = "adm"

    def __init__(self, path: str):
        super().__init__(path, encoding="utf-8")

    def _open(self):
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.baseFilename, flags | os.O_EXCL, self.MODE)
            created = True
        except FileExistsError:
            fd = os.open(self.baseFilename, flags, self.MODE)
            created = False
        try:
            if created:
                os.fchmod(fd, self.MODE)  # whatever the umask
                if os.geteuid() == 0:
                    try:
                        gid = grp.getgrnam(self.GROUP).gr_gid
                    except KeyError:
                        gid = 0
                    os.fchown(fd, 0, gid)
            return os.fdopen(fd, "a", encoding=self.encoding)
        except BaseException:
            os.close(fd)
            raise

    def write_line(self, line: str) -> None:
        self.handle(logging.makeLogRecord({"msg": line}))


_PREFIX_RE = re.compile(r"^<\d+>")


class _WithFileLine:
    """Last processor when a log file is open: the journal's text plus the file's JSON line.

    In JSON mode the file line is the journal line without its ``<N>`` prefix (the
    same line the journal stores); on a terminal the file still gets JSON.
    """

    def __init__(self, render, json_mode: bool):
        self._render = render
        self._json_mode = json_mode

    def __call__(self, logger: Any, name: str, event_dict: dict):
        if self._json_mode:
            line = self._render(logger, name, event_dict)
            return (line,), {"file_line": _PREFIX_RE.sub("", line, count=1)}
        for_file = _mask_exception(logger, name, structlog.processors.format_exc_info(logger, name, dict(event_dict)))
        file_line = jsonlib.dumps(for_file, default=repr)
        return (self._render(logger, name, event_dict),), {"file_line": file_line}


class _StreamAndFileLogger:
    """structlog's final logger: one line to the stream (journal), one to the log file."""

    def __init__(self, stream, logfile: LogFile):
        self._stream = stream
        self._file = logfile

    def msg(self, message: str, file_line: str | None = None) -> None:
        self._stream.write(message + "\n")
        self._stream.flush()
        self._file.write_line(file_line if file_line is not None else message)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


_log_file: LogFile | None = None


def configure_logging(level: str = "info", *, json: bool | None = None, stream=None,
                      repeats: RepeatLimiter | None = None, file: str | None = None) -> None:
    """Configure structlog; ``file``: a path the lines also go to (opened first: an OSError changes nothing)."""
    global _log_file
    new_file = LogFile(file) if file else None
    if _log_file is not None:
        _log_file.close()
    _log_file = new_file
    if stream is None or stream is sys.stdout:
        stream = _StdStream("stdout")
    elif stream is sys.stderr:
        stream = _StdStream("stderr")
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _notice,
        repeats or RepeatLimiter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_processor,
    ]
    if json:
        processors += [
            # format_exc_info renders the traceback without locals (no secrets from frames)
            structlog.processors.format_exc_info,
            _mask_exception,
            _message_first,
            _PriorityJSONRenderer(),
        ]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=True, exception_formatter=structlog.dev.plain_traceback)]
    if new_file is not None:
        processors[-1] = _WithFileLine(processors[-1], json)
        logger = _StreamAndFileLogger(stream, new_file)
        logger_factory = lambda *_args: logger  # noqa: E731
    else:
        logger_factory = structlog.PrintLoggerFactory(file=stream)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging()


def get_logger(name: str | None = None, **bound: Any):
    # initial values keep the proxy lazy: module-level loggers follow configure_logging()
    if name:
        bound["component"] = name
    return structlog.get_logger(**bound)
