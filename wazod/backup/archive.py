"""Writing and reading the .tgz archives.

Writing: ``tar`` (GNU tar, the exact member list, owners/modes/times kept) piped
straight into ``pigz`` (parallel, but a standard gzip stream that ``tar xzf``
and ``gzip -t`` read) or ``gzip``, which writes the temporary file itself;
then fsync. Both children get their own process group and are killed on
cancellation, so SIGTERM never leaves a writer behind; the caller removes the
temporary file.

Reading (``scan``): one pass over the file that hashes it (SHA-256), inflates
it with zlib (each gzip member's CRC and length checked), walks every tar
header to the end-of-archive marker, and can copy members out (the dump, for
``pg_restore --list``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from wazod.logsetup import get_logger

log = get_logger("backup")

CHUNK = 1 << 20
TAR_RECORD = 10240  # GNU tar's default record (blocking factor 20)
CHECKPOINT_RECORDS = 512  # a progress tick every 5 MiB read by tar

Progress = Callable[[str, int, int | None], None]


class ArchiveError(Exception):
    """The archive could not be written or read back correctly."""


def compressor_argv(use_pigz: bool, level: int) -> list[str]:
    """pigz when wanted and installed (parallel), else gzip; both write a standard gzip stream."""
    if use_pigz and shutil.which("pigz"):
        return ["pigz", f"-{level}", "-c"]
    return ["gzip", f"-{level}", "-c"]


def _nice(argv: list[str], low_priority: bool) -> list[str]:
    return ["nice", "-n", "19", "ionice", "-c3", *argv] if low_priority else argv


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


# tar's messages for a listed path it could not archive (it goes on with --ignore-failed-read)
_MISSING_RE = re.compile(r"^tar: (?P<path>.+?): (?:Warning: )?(?P<why>Cannot stat|Cannot open|File removed before we "
                         r"read it)(?::\s*(?P<detail>.*))?$")


@dataclass
class Written:
    size: int
    warnings: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, why): listed, not archived


async def write_tgz(
    *,
    root: str,
    list_file: str,
    out_path: str,
    compressor: list[str],
    low_priority: bool = True,
    total_bytes: int | None = None,
    progress: Progress | None = None,
    phase: str = "data",
) -> Written:
    """tar the NUL-separated member list ``list_file`` (paths relative to ``root``) into ``out_path``.

    The compressor writes straight into the file (an extra copy through this
    process would cost a core's worth of context switches on a 2-core node);
    the SHA-256 is taken when the archive is read back by ``scan``.
    """
    tar_argv = [
        "tar", "--create", "--file=-", f"--directory={root}", "--preserve-permissions", "--ignore-failed-read",
        "--warning=no-file-changed", f"--checkpoint={CHECKPOINT_RECORDS}",
        "--checkpoint-action=echo=wazod-checkpoint %u",
        # positional options: they must come before the list they apply to
        "--null", "--no-recursion", f"--files-from={list_file}",
    ]
    pipe_r, pipe_w = os.pipe()
    dst_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    tar = gz = None
    try:
        tar = await asyncio.create_subprocess_exec(
            *_nice(tar_argv, low_priority), stdin=asyncio.subprocess.DEVNULL, stdout=pipe_w,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd="/")
        os.close(pipe_w)
        pipe_w = -1
        gz = await asyncio.create_subprocess_exec(
            *_nice(compressor, low_priority), stdin=pipe_r, stdout=dst_fd,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd="/")
        os.close(pipe_r)
        pipe_r = -1
        warnings: list[str] = []
        missing: list[tuple[str, str]] = []

        async def read_tar_stderr() -> None:
            assert tar is not None and tar.stderr is not None
            async for raw in tar.stderr:
                line = raw.decode(errors="replace").rstrip()
                if "wazod-checkpoint" in line:
                    if progress is not None:
                        with contextlib.suppress(ValueError):
                            n = int(line.rsplit(" ", 1)[-1])
                            progress(phase, n * CHECKPOINT_RECORDS * TAR_RECORD, total_bytes)
                elif line:
                    warnings.append(line)
                    m = _MISSING_RE.match(line)
                    if m:
                        why = m["why"] + (f": {m['detail']}" if m["detail"] else "")
                        missing.append((m["path"], why))

        gz_err_task = asyncio.create_task(gz.stderr.read())
        await read_tar_stderr()
        tar_rc = await tar.wait()
        gz_err = (await gz_err_task).decode(errors="replace").strip()
        gz_rc = await gz.wait()
        if gz_rc != 0:
            if "No space left" in gz_err or "write error" in gz_err.lower():
                raise ArchiveError(f"cannot write {out_path}: {gz_err[-200:]}")
            raise ArchiveError(f"{compressor[0]} exited with {gz_rc}" + (f": {gz_err[-300:]}" if gz_err else ""))
        if tar_rc not in (0, 1):  # 1: a file changed while being read (a warning, as in Wazo)
            detail = "; ".join(warnings[-3:])
            raise ArchiveError(f"tar exited with {tar_rc}" + (f": {detail}" if detail else ""))
        try:
            os.fsync(dst_fd)
        except OSError as e:
            raise ArchiveError(f"cannot write {out_path}: {e.strerror}") from None
        if progress is not None:
            progress(phase, total_bytes or 0, total_bytes)
        return Written(os.fstat(dst_fd).st_size, warnings, missing)
    except BaseException:
        for p in (tar, gz):
            if p is not None:
                await asyncio.shield(_kill(p))
        raise
    finally:
        for fd in (pipe_r, pipe_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.close(dst_fd)


@dataclass
class Member:
    """One tar member as tar will extract it (GNU long names and pax path/linkpath applied)."""

    name: str
    kind: str  # the typeflag: "0" file, "1" hard link, "2" symlink, "3"/"4" devices, "5" dir, "6" FIFO...
    mode: int
    linkname: str


MAX_META = 1 << 20  # a long name or pax header larger than this is not a backup's


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``key=value`` records of a pax extended header (``"%d %s=%s\\n"`` each)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(data) and data[i:i + 1] != b"\0":
        space = data.index(b" ", i)
        length = int(data[i:space])
        if length <= 0:
            raise tarfile.HeaderError("bad pax header record")
        record = data[space + 1:i + length].rstrip(b"\n")
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        i += length
    return out


class _TarWalker:
    """Walks tar headers in a stream of decompressed bytes, without buffering member data.

    Counts members (GNU long-name and pax headers are not members), checks each
    header's checksum and the end-of-archive marker, and hands the content of
    chosen members to a sink. Python's tarfile in stream mode does the same
    five times slower.
    """

    META = (b"L", b"K", b"x", b"g")

    def __init__(self, choose: Callable[[str], object | None] | None,
                 on_member: Callable[[Member], None] | None = None):
        self.choose = choose
        self.on_member = on_member
        self.long_link: str | None = None
        self.pax: dict[str, str] = {}
        self.pax_global: dict[str, str] = {}
        self.header = bytearray()
        self.data_left = 0
        self.pad_left = 0
        self.sink = None
        self.members = 0
        self.zero_blocks = 0
        self.ended = False
        self.long_name: str | None = None
        self.meta_type: bytes | None = None
        self.meta = bytearray()

    @staticmethod
    def _number(field: bytes) -> int:
        if field[0] & 0x80:  # GNU base-256
            return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        text = field.split(b"\0", 1)[0].strip()
        return int(text, 8) if text else 0

    def _on_header(self, block: bytes) -> None:
        if block == bytes(512):
            self.zero_blocks += 1
            if self.zero_blocks >= 2:
                self.ended = True
            return
        if self.zero_blocks:
            raise tarfile.HeaderError("data after an end-of-archive block")
        stored = self._number(block[148:156])
        computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if stored != computed:
            raise tarfile.HeaderError(f"bad header checksum after member {self.members}")
        size = self._number(block[124:136])
        kind = block[156:157]
        self.data_left = size
        self.pad_left = (-size) % 512
        self.sink = None
        if kind in self.META:
            self.meta_type = kind
            self.meta = bytearray()
            return
        name = self.long_name or block[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if block[257:262] == b"ustar" and block[345] and not self.long_name:
            prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            name = f"{prefix}/{name}"
        pax = {**self.pax_global, **self.pax}
        name = pax.get("path", name)
        if self.on_member is not None:
            linkname = (self.long_link or pax.get("linkpath")
                        or block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
            self.on_member(Member(name, kind.decode("latin-1") or "0", self._number(block[100:108]), linkname))
        self.long_name = self.long_link = None
        self.pax = {}
        self.meta_type = None
        self.members += 1
        if self.choose is not None and kind in (b"0", b"\0", b"7"):
            self.sink = self.choose(name)

    def _end_of_meta(self) -> None:
        if self.meta_type == b"L":
            self.long_name = bytes(self.meta).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif self.meta_type == b"K":
            self.long_link = bytes(self.meta).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif self.meta_type == b"x":
            self.pax = _pax_records(bytes(self.meta))
        elif self.meta_type == b"g":
            self.pax_global.update(_pax_records(bytes(self.meta)))
        self.meta_type = None

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self.data_left:
                k = min(self.data_left, n - i)
                if self.sink is not None:
                    self.sink(view[i:i + k])
                elif self.meta_type is not None:
                    self.meta += view[i:i + k]
                    if len(self.meta) > MAX_META:
                        raise tarfile.HeaderError("a long-name or pax header larger than 1 MiB")
                self.data_left -= k
                i += k
                if not self.data_left and self.meta_type is not None and not self.pad_left:
                    self._end_of_meta()
                continue
            if self.pad_left:
                k = min(self.pad_left, n - i)
                self.pad_left -= k
                i += k
                if not self.pad_left and self.meta_type is not None:
                    self._end_of_meta()
                continue
            if self.meta_type is not None:
                self._end_of_meta()
            if self.ended:
                return  # the rest of the last record: zeros
            take = view[i:i + 512 - len(self.header)]
            self.header += take
            i += len(take)
            if len(self.header) == 512:
                block = bytes(self.header)
                self.header.clear()
                self._on_header(block)


@dataclass
class Scan:
    sha256: str
    size: int
    members: int
    extracted: dict[str, str] = field(default_factory=dict)  # member name -> sha256 of its content


def _chunks(path: str, follow: threading.Event | None):
    """The file's bytes; with ``follow``, also those appended until ``follow`` is set (the writer ended)."""
    while True:
        try:
            f = open(path, "rb", buffering=0)
            break
        except FileNotFoundError:
            if follow is None or follow.is_set():
                raise
            time.sleep(0.02)
    with f:
        while True:
            chunk = f.read(CHUNK)
            if chunk:
                yield chunk
            elif follow is None or follow.is_set():
                while chunk := f.read(CHUNK):  # what was written between the last read and the end
                    yield chunk
                return
            else:
                time.sleep(0.02)


def scan(path: str, *, extract: Callable[[str], str | None] | None = None, stop: Callable[[], bool] | None = None,
         follow: threading.Event | None = None, on_member: Callable[[Member], None] | None = None) -> Scan:
    """Read ``path`` to its end: SHA-256, every gzip member's CRC and length, every tar header; copy members out.

    ``extract(name)`` returns a destination path for the regular members to copy (else None).
    ``on_member(member)`` sees every member's name, type, mode and link target (the restore's check).
    ``follow``: read the file while it is being written, until the event is set (the
    read-back then overlaps the compression instead of following it).
    Raises ArchiveError naming the first problem.
    """
    extracted: dict[str, str] = {}
    outputs: list = []

    def choose(name: str):
        dest = extract(name) if extract else None
        if not dest:
            return None
        out = open(dest, "wb")
        h = hashlib.sha256()
        outputs.append((name, out, h))

        def sink(chunk) -> None:
            h.update(chunk)
            out.write(chunk)
        return sink

    walker = _TarWalker(choose if extract else None, on_member)
    digest = hashlib.sha256()
    size = 0
    try:
        inflater = zlib.decompressobj(31)
        started = False
        for chunk in _chunks(path, follow):
            if stop is not None and stop():
                raise InterruptedError("verification interrupted")
            digest.update(chunk)
            size += len(chunk)
            started = True
            data = chunk
            while data:
                if inflater.eof:  # another gzip member follows (concatenated streams are valid gzip)
                    inflater = zlib.decompressobj(31)
                walker.feed(inflater.decompress(data, 4 * CHUNK))
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        if started and not inflater.eof:
            walker.feed(inflater.flush())
        if not started:
            raise ArchiveError(f"{path}: empty file")
        if not inflater.eof:
            raise ArchiveError(f"{path}: damaged archive: the gzip stream is truncated")
        if not walker.ended:
            raise ArchiveError(f"{path}: damaged archive: no end-of-archive marker (truncated tar)")
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except zlib.error as e:
        raise ArchiveError(f"{path}: damaged archive: {e}") from None
    except tarfile.HeaderError as e:
        raise ArchiveError(f"{path}: damaged archive: {e}") from None
    except ValueError as e:  # a header number that is not octal
        raise ArchiveError(f"{path}: damaged archive: bad tar header ({e})") from None
    finally:
        for name, out, h in outputs:
            out.close()
            extracted[name] = h.hexdigest()
    return Scan(digest.hexdigest(), size, walker.members, extracted)
