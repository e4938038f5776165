"""Choosing what goes into data.tgz: Wazo's list, exclusions and size rules, nothing left out silently.

Wazo's script handed tar its directories and an exclusion list and never told
anyone what the size rules had dropped. Here the tree is walked once, in
Python, and tar receives the exact list of members (``--no-recursion``): the
member count is known in advance (so the archive can be checked against it),
the bytes to save are known (free-space check, progress bar), and every path
left out is recorded with its reason for the manifest.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from dataclasses import dataclass, field


@dataclass
class Skipped:
    path: str  # relative to root
    reason: str
    files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "files": self.files, "bytes": self.bytes}


@dataclass
class Selection:
    members: list[str] = field(default_factory=list)  # relative paths, parents before children
    bytes: int = 0  # size of the regular files among members
    files: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    followed: list[dict] = field(default_factory=list)  # {"path", "target"}: top paths that are links to directories

    @property
    def skipped_files(self) -> int:
        return sum(s.files for s in self.skipped)

    @property
    def skipped_bytes(self) -> int:
        return sum(s.bytes for s in self.skipped)


def _norm(pattern: str) -> str:
    return pattern.strip().strip("/")


def _under(rel: str, top: str) -> bool:
    return rel == top or rel.startswith(top + "/")


def _strictly_under(rel: str, top: str) -> bool:
    return rel.startswith(top + "/")


def _count_tree(path: str) -> tuple[int, int]:
    """Files and bytes below ``path`` (for the manifest's account of a skipped directory)."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            files += 1
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
    return files, size


class Rules:
    """The backup section's selection rules, resolved once."""

    def __init__(self, section):
        self.excludes = [_norm(p) for p in section.exclude if _norm(p)]
        self.rule_dirs = [_norm(p) for p in section.size_rule_dirs if _norm(p)]
        self.voicemail = _norm(section.voicemail_dir)
        self.max_file_size = section.max_file_size
        self.max_dir_entries = section.max_dir_entries
        self.voicemail_dir_rule = section.voicemail_dir_rule
        self.voicemail_file_rule = section.voicemail_file_rule

    def excluded(self, rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, p) for p in self.excludes)

    def _in_rule_dirs(self, rel: str) -> bool:
        return any(_strictly_under(rel, d) for d in self.rule_dirs)

    def _in_voicemail(self, rel: str) -> bool:
        return bool(self.voicemail) and _under(rel, self.voicemail)

    def dir_too_big(self, rel: str, entries: int) -> bool:
        if self.max_dir_entries is None or entries <= self.max_dir_entries:
            return False
        if not self._in_rule_dirs(rel):
            return False
        return self.voicemail_dir_rule or not self._in_voicemail(rel)

    def file_too_big(self, rel: str, size: int) -> bool:
        if self.max_file_size is None or size <= self.max_file_size:
            return False
        if not self._in_rule_dirs(rel):
            return False
        return self.voicemail_file_rule or not self._in_voicemail(rel)


def select(section, stop=None) -> Selection:
    """Walk ``section.paths`` under ``section.root`` and apply the rules. ``stop()`` True aborts (SIGTERM)."""
    root = os.path.abspath(section.root)
    rules = Rules(section)
    sel = Selection()
    seen: set[str] = set()
    tops: list[str] = []
    for pattern in section.paths:
        pattern = _norm(pattern)
        if not pattern:
            continue
        for full in sorted(glob.glob(os.path.join(glob.escape(root), pattern))):
            rel = os.path.relpath(full, root)
            nested = any(_strictly_under(rel, t) for t in tops)
            if rel not in seen and not rel.startswith("..") and not nested:
                seen.add(rel)
                tops.append(rel)

    def add_file(rel: str, full: str) -> None:
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISSOCK(st.st_mode):
            sel.skipped.append(Skipped(rel, "socket (tar cannot archive it)", 1, 0))
            return
        if rules.excluded(rel):
            sel.skipped.append(Skipped(rel, "excluded", 1, st.st_size if stat.S_ISREG(st.st_mode) else 0))
            return
        if stat.S_ISREG(st.st_mode) and rules.file_too_big(rel, st.st_size):
            sel.skipped.append(Skipped(rel, f"file larger than max_file_size ({rules.max_file_size} bytes)",
                                       1, st.st_size))
            return
        sel.members.append(rel)
        if stat.S_ISREG(st.st_mode):
            sel.files += 1
            sel.bytes += st.st_size

    for top in tops:
        full_top = os.path.join(root, top)
        linked = os.path.islink(full_top) and os.path.isdir(full_top)
        if linked:
            # a tree moved to a bigger disk and linked back (the spool, the sounds): its content is what
            # matters. The members keep the link's name (the kernel follows it while tar reads them); the
            # top itself is listed as "<top>/." so tar stores a directory there, not the link: Wazo's
            # `tar xpf` restores it as a directory, or through the link where the node has one.
            sel.followed.append({"path": top, "target": os.readlink(full_top)})
        elif not os.path.isdir(full_top) or os.path.islink(full_top):
            add_file(top, full_top)
            continue
        for dirpath, dirnames, filenames in os.walk(full_top, followlinks=False):
            if stop is not None and stop():
                raise InterruptedError("backup interrupted while reading the tree")
            rel_dir = os.path.relpath(dirpath, root)
            if rules.excluded(rel_dir):
                files, size = _count_tree(dirpath)
                sel.skipped.append(Skipped(rel_dir, "excluded", files, size))
                dirnames[:] = []
                continue
            entries = len(dirnames) + len(filenames)
            if rules.dir_too_big(rel_dir, entries):
                files, size = _count_tree(dirpath)
                sel.skipped.append(Skipped(
                    rel_dir, f"directory of {entries} entries, more than max_dir_entries ({rules.max_dir_entries})",
                    files, size))
                dirnames[:] = []
                continue
            sel.members.append(rel_dir + "/." if linked and dirpath == full_top else rel_dir)
            dirnames.sort()
            # symlinks to directories are members themselves, never followed
            for name in list(dirnames):
                if os.path.islink(os.path.join(dirpath, name)):
                    dirnames.remove(name)
                    filenames.append(name)
            for name in sorted(filenames):
                add_file(os.path.join(rel_dir, name), os.path.join(dirpath, name))
    return sel
