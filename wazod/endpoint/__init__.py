"""The daemon's HTTP endpoint: every route, who may call it, and what a client may cost.

It sits above the parts whose routes it serves (health, status, maintenance,
the HA arbiter), which publish them in ``ctx.registry["http_routes"]``; none of
them imports it.

- ``server``: the aiohttp server on ``status.listen`` (the daemon part);
- ``routes``: GET /health, /liveness, /status, /metrics;
- ``auth``: read token when ``status.auth`` asks for it, admin token for every
  change of state;
- ``limits``: connection cap within the file-descriptor limit, header timeout.
"""
