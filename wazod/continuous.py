"""What the continuous parts (replication every few seconds, file sync on inotify) share.

A job repeated every few seconds cannot report like an hourly one: an event
per "nothing to do" would flood the bus, and a slave restarting would raise an
alarm every few seconds. ``FailureReport`` is the ``report`` filter they give
``wazod.jobs.run_job``: copies are recorded and emitted, checks that found
nothing are not, a failure only once it has lasted ``FAILURE_GRACE`` seconds
(and again only when its error changes), and the first success after a
reported failure is, as the all-clear. ``delay`` spaces the retries out while
failing.
"""

from __future__ import annotations

import time

from wazod.jobs import JobResult

FAILURE_GRACE = 60.0  # seconds a failure lasts before replication_failed is emitted
MAX_BACKOFF = 60.0  # longest interval between checks while they fail


class FailureReport:
    """Which results of a repeating job go to the record and the bus (see the module docstring)."""

    def __init__(self, grace: float = FAILURE_GRACE):
        self.grace = grace
        self.failing_since: float | None = None
        self.failures = 0
        self.reported_error: str | None = None

    def __call__(self, result: JobResult) -> bool:
        if result.status == "failed":
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
            self.failures += 1
            if now - self.failing_since < self.grace or result.error == self.reported_error:
                return False
            self.reported_error = result.error
            return True
        recovered = self.reported_error is not None
        self.failing_since, self.failures, self.reported_error = None, 0, None
        return result.status == "ok" or recovered

    def delay(self, interval: float) -> float:
        """The wait before the next attempt: ``interval``, doubled per failure in a row, at most a minute."""
        return min(interval * (2 ** min(self.failures, 8)), max(MAX_BACKOFF, interval))


