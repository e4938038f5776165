"""The configuration files as bytes on disk: which files make the hierarchy, and their text, read safely.

Kept apart from the YAML parsing (``wazod.config.hierarchy``): a command whose configuration is in the
validated cache (``wazod.config.cache``) reads the files to know they are unchanged, and parses nothing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wazod.errors import ConfigError

MAX_FILE_BYTES = 1 << 20  # a configuration file is a few kB; more is a mistake (or /dev/zero)


def read_config_text(path: Path, *, limit: int = MAX_FILE_BYTES) -> str | None:
    """The UTF-8 text of a configuration file; None when it does not exist.

    Only a regular file (a symlink to one is fine) of at most ``limit`` bytes is
    read: a FIFO would block the reader forever and /dev/zero would fill the
    memory, so both are refused before any read. The file is opened
    non-blocking and checked with ``fstat`` on the open descriptor (no race
    between the check and the read). Bytes that are not UTF-8 are a
    configuration error naming the line, not a traceback.
    """
    def refuse_unless_regular(st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{path}: is a directory, not a configuration file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: is not a regular file (a FIFO, device or socket): refused")

    try:
        refuse_unless_regular(os.stat(path))  # a device is not even opened (opening some has effects)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    try:
        refuse_unless_regular(os.fstat(fd))  # the file opened is the one checked
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ConfigError(f"{path}: larger than {limit} bytes: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def conf_d_files(directory: Path) -> list[Path]:
    """The conf.d files Wazo would read, in Wazo's order (code point, not locale)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [directory / n for n in sorted(names) if n.endswith(".yml") and not n.startswith(".")]


def read_layer_texts(config_file: str | os.PathLike) -> list[tuple[Path, str | None]]:
    """The files of the hierarchy in priority order (conf.d's, then config.yml) with their text, unparsed
    (None: config.yml does not exist): what the configuration is made of, byte for byte."""
    config_file = Path(config_file)
    paths = [*conf_d_files(config_file.parent / "conf.d"), config_file]
    return [(p, read_config_text(p)) for p in paths]
