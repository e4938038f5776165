"""wazod: one long-running supervisor per Wazo node.

It replaces the cron and shell scripts that hold a Wazo HA pair together
(replication, file sync, master watch, purge, backup, berofos switching).
"""

__version__ = "0.1.0"
