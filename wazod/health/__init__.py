"""Health of this node: checks with hysteresis, the HTTP status endpoint, Prometheus metrics.

- ``checks``: disk, process, NTP, certificates, PostgreSQL, each on its own interval;
  ``health_degraded`` / ``health_recovered`` on level changes only.
- ``http``: GET /health, /liveness, /status, /metrics (+ routes other parts register).
- ``metrics``: the Prometheus view of the daemon (``PROBE_RTT`` for the HA probe).
"""
