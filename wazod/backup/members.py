"""What a data archive may put on this node: the restore's check of every member, before anything changes.

GNU tar already refuses to write through a link or above its directory, but it
happily creates what an archive asks for: a device node anyone may write, a
setuid-root shell, a ``cron.d`` file that runs as root, a link to
``/etc/shadow`` in a directory the web server shows. A data.tgz made by wazod
(or by Wazo's ``xivo-backup``) holds none of these, so the restore refuses an
archive with any of them, naming the members, before step 2:

- names: relative, without ``..``, inside ``backup.paths`` (or a parent
  directory of one of them);
- types: regular files, directories, symbolic and hard links only (no device,
  FIFO, socket or unknown type);
- modes: no setuid or setgid file (a setgid directory is fine: it only
  passes its group on);
- links: a hard link names a member inside ``backup.paths``; a symbolic
  link's target, resolved from where it sits, stays inside ``backup.paths``
  or under one of ``backup.restore_link_targets`` (systemd's unit links point
  into /lib/systemd, a masked unit to /dev/null).
"""

from __future__ import annotations

import fnmatch
import posixpath

from wazod.backup.archive import Member

ALLOWED_KINDS = {"0": "file", "7": "file", "S": "file", "1": "hard link", "2": "symbolic link", "5": "directory"}
KIND_NAMES = {"3": "character device", "4": "block device", "6": "FIFO"}


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def within_paths(rel: str, patterns: list[str], *, ancestors: bool = False) -> bool:
    """``rel`` is at or under a path matching one of ``patterns`` (or, with ``ancestors``, above one)."""
    parts = _parts(rel)
    for pattern in patterns:
        pat = _parts(pattern)
        common = min(len(parts), len(pat))
        if all(fnmatch.fnmatchcase(parts[i], pat[i]) for i in range(common)):
            if len(parts) >= len(pat) or ancestors:
                return True
    return False


def _name_problem(name: str) -> str | None:
    if name.startswith("/"):
        return "absolute name"
    if ".." in name.split("/"):
        return "'..' in the name"
    if not _parts(name):
        return "empty name"
    return None


def member_problem(m: Member, paths: list[str], link_targets: list[str]) -> str | None:
    """Why ``m`` must not be restored (None: fine)."""
    problem = _name_problem(m.name)
    if problem:
        return problem
    kind = ALLOWED_KINDS.get(m.kind)
    if kind is None:
        return f"a {KIND_NAMES.get(m.kind, f'member of tar type {m.kind!r}')} (only files, directories and links)"
    if kind != "directory" and m.mode & 0o6000:
        return f"set{'uid' if m.mode & 0o4000 else 'gid'} bit (mode {m.mode & 0o7777:04o})"
    if not within_paths(m.name, paths, ancestors=kind == "directory"):
        return "outside backup.paths"
    if kind == "hard link":
        problem = _name_problem(m.linkname)
        if problem or not within_paths(m.linkname, paths):
            return f"hard link to {m.linkname!r}, outside backup.paths"
    elif kind == "symbolic link":
        target = m.linkname
        if not target:
            return "symbolic link without a target"
        if target.startswith("/"):
            resolved = posixpath.normpath(target)
            if any(resolved == t.rstrip("/") or resolved.startswith(t.rstrip("/") + "/") for t in link_targets):
                return None
            rel = resolved.lstrip("/")
        else:
            rel = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), target))
            if rel == ".." or rel.startswith("../"):
                return f"symbolic link to {target!r}, which leaves the restored tree"
        if not within_paths(rel, paths, ancestors=True):
            return f"symbolic link to {target!r}, outside backup.paths and backup.restore_link_targets"
    return None


class MemberCheck:
    """Collects the problems of an archive's members as ``archive.scan`` walks them."""

    def __init__(self, paths: list[str], link_targets: list[str], keep: int = 5):
        self.paths, self.link_targets, self.keep = paths, link_targets, keep
        self.problems: list[str] = []
        self.count = 0

    def __call__(self, m: Member) -> None:
        problem = member_problem(m, self.paths, self.link_targets)
        if problem:
            self.count += 1
            if len(self.problems) < self.keep:
                self.problems.append(f"{m.name[:200]}: {problem}")

    def summary(self) -> str | None:
        if not self.count:
            return None
        more = f" (and {self.count - len(self.problems)} more)" if self.count > len(self.problems) else ""
        return "; ".join(self.problems) + more
