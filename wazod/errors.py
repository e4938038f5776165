"""Exit codes of the contract and the exceptions that carry them.

Every command maps its outcome onto these codes, so scripts around wazod can
tell "failed" from "bad usage" from "someone else holds the lock".
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2  # bad usage or bad configuration
    LOCKED = 3  # another run of the same operation holds the lock
    WRONG_ROLE = 4  # the operation does not apply to this node's role


class WazodError(Exception):
    """An error meant for the administrator: its message is printed as is."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(WazodError):
    """The configuration is unusable. The message names the file, line and key path."""

    exit_code = ExitCode.USAGE


class LockHeld(WazodError):
    exit_code = ExitCode.LOCKED


class WrongRole(WazodError):
    exit_code = ExitCode.WRONG_ROLE
