"""Logging: structlog, one JSON object per line on stdout for journald.

Each line starts with the syslog priority in angle brackets (``<6>{...}``):
systemd's journal reads that prefix (SyslogLevelPrefix=yes, the default) and
files the line at that level: 5 (notice) for the HA story (``notice=True``),
4 for failures. The object's first key, ``event``, is a short human message;
its details follow. On a terminal the output is readable instead.
Secrets are masked in every event dict, and tracebacks carry no frame locals.
"""

from __future__ import annotations

import logging
import sys
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


def configure_logging(level: str = "info", *, json: bool | None = None, stream=None) -> None:
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
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **bound: Any):
    # initial values keep the proxy lazy: module-level loggers follow configure_logging()
    if name:
        bound["component"] = name
    return structlog.get_logger(**bound)
