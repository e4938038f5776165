"""PostgreSQL connection strings taken apart and rebuilt by libpq's own parser.

Why libpq's parser and not ``urllib`` or regular expressions: a DSN is
whatever libpq accepts, a ``postgresql://`` URL or ``key=value`` pairs, and
the two grammars have corners that hand-written code gets wrong.
``urlunsplit`` turns the shipped ``postgresql:///asterisk`` into
``postgresql:/asterisk`` (a database of that name); a regular expression
stops a ``password=ab,cd`` at the comma or a ``u:p@ss@h`` password at the
first ``@``. Here a DSN is read once by libpq's ``PQconninfoParse`` into its
own keywords, and every string handed on is rebuilt from them with libpq's
quoting rule (a value in single quotes, ``\\`` and ``'`` escaped).

Why libpq through ctypes rather than psycopg's ``conninfo_to_dict`` (which
calls the same function): importing psycopg costs about 23 MB and 0.17 s in
every process that reads a DSN, the daemon included, for two C calls. The
system's libpq5 (Debian's package, which psql and pg_dump use too) is loaded
once, lazily. Nothing here connects.
"""

from __future__ import annotations

import ctypes
import re
from functools import lru_cache

from wazod.errors import ConfigError

MASK = "********"

# connection keywords whose value is a secret (libpq's "debug display" class "*": password, sslpassword)
SECRET_KEYWORDS = frozenset({"password", "sslpassword"})


class _Option(ctypes.Structure):
    """libpq's ``PQconninfoOption``."""

    _fields_ = [("keyword", ctypes.c_char_p), ("envvar", ctypes.c_char_p), ("compiled", ctypes.c_char_p),
                ("val", ctypes.c_char_p), ("label", ctypes.c_char_p), ("dispchar", ctypes.c_char_p),
                ("dispsize", ctypes.c_int)]


@lru_cache(maxsize=1)
def _libpq():
    # libpq5's soname first: ctypes.util.find_library runs ``ldconfig -p`` (a process, about 10 ms of a
    # command's start), so it is only the fallback for a system whose libpq has another name
    try:
        lib = ctypes.CDLL("libpq.so.5")
    except OSError:
        from ctypes.util import find_library

        try:
            lib = ctypes.CDLL(find_library("pq") or "libpq.so.5")
        except OSError as e:
            raise ConfigError(f"libpq (Debian package libpq5) is needed to read DSNs: {e}") from None
    lib.PQconninfoParse.restype = ctypes.POINTER(_Option)
    lib.PQconninfoParse.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.PQconninfoFree.argtypes = [ctypes.POINTER(_Option)]
    lib.PQconninfoFree.restype = None
    lib.PQfreemem.argtypes = [ctypes.c_void_p]
    lib.PQfreemem.restype = None
    return lib


def _conninfo_parse(dsn: str) -> dict[str, str]:
    """``PQconninfoParse``: the keywords ``dsn`` sets; ValueError with libpq's message."""
    lib = _libpq()
    error = ctypes.c_void_p()
    options = lib.PQconninfoParse(dsn.encode(), ctypes.byref(error))
    if not options:
        message = "not a connection string"
        if error.value:
            message = ctypes.string_at(error.value).decode(errors="replace").strip() or message
            lib.PQfreemem(error)
        raise ValueError(message)
    try:
        params = {}
        i = 0
        while options[i].keyword is not None:
            if options[i].val is not None:
                params[options[i].keyword.decode()] = options[i].val.decode(errors="surrogateescape")
            i += 1
        return params
    finally:
        lib.PQconninfoFree(options)


def parse(dsn: str, setting: str = "dsn") -> dict[str, str]:
    """libpq's keywords of ``dsn``; a ConfigError naming ``setting`` when libpq refuses it.

    The error never repeats the DSN (it may hold a password).
    """
    if not isinstance(dsn, str):
        raise ConfigError(f"{setting}: expected a connection string, got {type(dsn).__name__}")
    if "\0" in dsn:
        raise ConfigError(f"{setting}: a connection string cannot contain a NUL byte")
    try:
        return _conninfo_parse(dsn)
    except ValueError as e:
        text = str(e).splitlines()[0]
        # libpq quotes the offending part of the string: never echo it
        reason = re.sub(r'"[^"]*"', "...", text).removesuffix(" in connection info string")
        raise ConfigError(f"{setting}: cannot parse the connection string ({reason}); expected "
                          "postgresql://[user@][host][:port]/dbname or key=value pairs") from None


def _quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build(params: dict[str, str]) -> str:
    """A ``key=value`` connection string of ``params``, quoted as libpq reads it back."""
    return " ".join(f"{key}={_quote(value)}" for key, value in params.items())


def split_secrets(params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(``params`` without secrets, the secrets)."""
    plain = {k: v for k, v in params.items() if k not in SECRET_KEYWORDS}
    secrets = {k: v for k, v in params.items() if k in SECRET_KEYWORDS}
    return plain, secrets


def masked(dsn: str) -> str | None:
    """``dsn`` with its secrets replaced by the mask, rebuilt by libpq; None if libpq cannot read it."""
    try:
        params = parse(dsn)
    except ConfigError:
        return None
    if not any(k in params for k in SECRET_KEYWORDS):
        return dsn
    return build({k: (MASK if k in SECRET_KEYWORDS else v) for k, v in params.items()})


def describe(dsn: str) -> str:
    """Where ``dsn`` points, for messages: ``database asterisk on /var/run/postgresql:5432 as postgres``.

    Holds no secret by construction (only dbname, host, port and user are read).
    """
    try:
        p = parse(dsn)
    except ConfigError:
        return "an unreadable connection string"
    where = p.get("host") or p.get("hostaddr") or "the local socket"
    if p.get("port"):
        where += f":{p['port']}"
    text = f"database {p.get('dbname') or '(default)'} on {where}"
    return text + (f" as {p['user']}" if p.get("user") else "")


# libpq keyword -> asyncpg.connect() argument
_ASYNCPG_ARGS = {"host": "host", "port": "port", "user": "user", "password": "password", "passfile": "passfile",
                 "dbname": "database", "sslmode": "ssl", "target_session_attrs": "target_session_attrs",
                 "krbsrvname": "krbsrvname", "gsslib": "gsslib", "service": "service",
                 "servicefile": "servicefile"}


# libpq keywords asyncpg reads only from a URL's query (TLS files and limits): given to it that way
_ASYNCPG_QUERY = frozenset({"sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
                            "ssl_min_protocol_version", "ssl_max_protocol_version"})


def asyncpg_arguments(dsn: str, setting: str = "dsn") -> dict:
    """``asyncpg.connect`` keyword arguments for ``dsn`` (asyncpg reads only URLs, and its own way).

    A keyword asyncpg cannot honour is refused by name rather than silently ignored.
    """
    params = parse(dsn, setting)
    kwargs: dict = {}
    settings: dict[str, str] = {}
    query: dict[str, str] = {}
    for key, value in params.items():
        if key in _ASYNCPG_QUERY:
            query[key] = value
        elif key in _ASYNCPG_ARGS:
            kwargs[_ASYNCPG_ARGS[key]] = value
        elif key == "connect_timeout":
            try:
                kwargs["timeout"] = float(value)
            except ValueError:
                raise ConfigError(f"{setting}: connect_timeout must be a number of seconds") from None
        elif key == "application_name":
            settings["application_name"] = value
        elif key == "options":
            settings["options"] = value
        else:
            supported = sorted({*_ASYNCPG_ARGS, *_ASYNCPG_QUERY, "connect_timeout", "application_name"})
            raise ConfigError(f"{setting}: the connection keyword {key!r} is not supported for wazod's own "
                              f"connections (supported: {', '.join(supported)})")
    if "options" in settings:
        raise ConfigError(f"{setting}: the connection keyword 'options' is not supported; "
                          "set server parameters on the role or database instead")
    if settings:
        kwargs["server_settings"] = settings
    if query:  # a URL of a query alone: the keywords above stay arguments, which asyncpg prefers
        from urllib.parse import urlencode

        kwargs["dsn"] = "postgresql://?" + urlencode(query)
    return kwargs
