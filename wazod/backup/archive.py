"""Writing and reading the .tgz archives.

Writing: ``tar`` (GNU tar, the exact member list, owners/modes/times kept) piped
straight into ``pigz`` (parallel, but a standard gzip stream that ``tar xzf``
and ``gzip -t`` read) or ``gzip``; the compressed bytes come back through one
reader thread that hashes them (SHA-256) and writes them to a temporary file,
then fsyncs. Both children get their own process group and are killed on
cancellation, so SIGTERM never leaves a writer behind; the caller removes the
temporary file.

Reading (``scan``): one pass over the file that hashes it, inflates it with the
gzip CRC and length checked, walks every tar header to the end, and can copy
one member out (the dump, for ``pg_restore --list``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import shutil
import signal
import tarfile
import threading
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


@dataclass
class Written:
    sha256: str
    size: int
    warnings: list[str] = field(default_factory=list)


def _copy_and_hash(src_fd: int, dst_fd: int, abort: threading.Event) -> tuple[str, int]:
    """Reader thread: compressed bytes from the pipe to the file, hashed on the way."""
    h = hashlib.sha256()
    size = 0
    with os.fdopen(src_fd, "rb", buffering=0) as src:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            if abort.is_set():
                continue  # keep draining so the writer does not block; the caller kills it
            h.update(chunk)
            view = memoryview(chunk)
            while view:
                n = os.write(dst_fd, view)
                view = view[n:]
            size += len(chunk)
    os.fsync(dst_fd)
    return h.hexdigest(), size


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
    """tar the NUL-separated member list ``list_file`` (paths relative to ``root``) into ``out_path``."""
    tar_argv = [
        "tar", "--create", "--file=-", f"--directory={root}", "--preserve-permissions", "--ignore-failed-read",
        "--warning=no-file-changed", f"--checkpoint={CHECKPOINT_RECORDS}",
        "--checkpoint-action=echo=wazod-checkpoint %u",
        # positional options: they must come before the list they apply to
        "--null", "--no-recursion", f"--files-from={list_file}",
    ]
    pipe_r, pipe_w = os.pipe()
    out_r, out_w = os.pipe()
    dst_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    tar = gz = None
    abort = threading.Event()
    try:
        tar = await asyncio.create_subprocess_exec(
            *_nice(tar_argv, low_priority), stdin=asyncio.subprocess.DEVNULL, stdout=pipe_w,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd="/")
        os.close(pipe_w)
        pipe_w = -1
        gz = await asyncio.create_subprocess_exec(
            *_nice(compressor, low_priority), stdin=pipe_r, stdout=out_w,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, cwd="/")
        os.close(pipe_r)
        os.close(out_w)
        pipe_r = out_w = -1
        copier = asyncio.create_task(asyncio.to_thread(_copy_and_hash, out_r, dst_fd, abort))
        out_r = -1  # owned by the thread now

        warnings: list[str] = []

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

        stderr_task = asyncio.create_task(read_tar_stderr())
        try:
            digest, size = await copier
        except OSError as e:
            abort.set()
            raise ArchiveError(f"cannot write {out_path}: {e.strerror}") from None
        await stderr_task
        tar_rc = await tar.wait()
        gz_err = (await gz.stderr.read()).decode(errors="replace").strip() if gz.stderr else ""
        gz_rc = await gz.wait()
        if tar_rc not in (0, 1):  # 1: a file changed while being read (a warning, as in Wazo)
            detail = "; ".join(warnings[-3:])
            raise ArchiveError(f"tar exited with {tar_rc}" + (f": {detail}" if detail else ""))
        if gz_rc != 0:
            raise ArchiveError(f"{compressor[0]} exited with {gz_rc}" + (f": {gz_err[-300:]}" if gz_err else ""))
        if progress is not None:
            progress(phase, total_bytes or 0, total_bytes)
        return Written(digest, size, warnings)
    except BaseException:
        abort.set()
        for p in (tar, gz):
            if p is not None:
                await asyncio.shield(_kill(p))
        raise
    finally:
        for fd in (pipe_r, pipe_w, out_r, out_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.close(dst_fd)


class _HashingReader:
    """A read-only file object that hashes what passes through it."""

    def __init__(self, f):
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


@dataclass
class Scan:
    sha256: str
    size: int
    members: int
    extracted: dict[str, str] = field(default_factory=dict)  # member name -> sha256 of its content


def scan(path: str, *, extract: Callable[[str], str | None] | None = None, stop: Callable[[], bool] | None = None,
         ) -> Scan:
    """Read ``path`` to its end: SHA-256, gzip CRC, every tar header; optionally copy members out.

    ``extract(name)`` returns a destination path for the members to copy (else None).
    Raises ArchiveError naming the first problem.
    """
    extracted: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            reader = _HashingReader(f)
            members = 0
            with gzip.GzipFile(fileobj=reader, mode="rb") as gz:
                with tarfile.open(fileobj=gz, mode="r|") as tar:
                    for member in tar:
                        if stop is not None and stop():
                            raise InterruptedError("verification interrupted")
                        members += 1
                        dest = extract(member.name) if (extract and member.isfile()) else None
                        if dest:
                            h = hashlib.sha256()
                            src = tar.extractfile(member)
                            with open(dest, "wb") as out:
                                while chunk := src.read(CHUNK):
                                    h.update(chunk)
                                    out.write(chunk)
                            extracted[member.name] = h.hexdigest()
                while gz.read(CHUNK):  # the rest of the stream: the CRC and length are checked at its end
                    pass
            reader.drain()
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{path}: damaged archive: {e}") from None
    except Exception as e:  # zlib.error and the like
        if type(e).__module__ == "zlib":
            raise ArchiveError(f"{path}: damaged archive: {e}") from None
        raise
    return Scan(reader.hash.hexdigest(), reader.size, members, extracted)
