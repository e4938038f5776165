"""Health of this node: checks with hysteresis and Prometheus metrics.

- ``checks``: disk, process, NTP, certificates, PostgreSQL, each on its own interval;
  ``health_degraded`` / ``health_recovered`` on level changes only.
- ``metrics``: the Prometheus view of the daemon (``PROBE_RTT`` for the HA probe).

The HTTP endpoint serving them (GET /health, /metrics...) is ``wazod.endpoint``, above.
"""
