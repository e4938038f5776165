"""wazod: one long-running supervisor per Wazo node.

It replaces the cron and shell scripts that hold a Wazo HA pair together
(replication, file sync, master watch, purge, backup, berofos switching).
"""

__version__ = "0.1.0"

# Here, not in wazod.config, so that the command line can name it without loading pydantic.
DEFAULT_CONFIG_PATH = "/etc/wazod/config.yml"
