"""Which arbiter ``ha.arbiter`` names: the wazod arbiter (HTTP) or an etcd lease.

Kept apart from ``wazod.ha.arbiter`` (the interface and the HTTP form) because it
needs both forms: the etcd one imports the interface, and the aetcd client it
brings is loaded only when a site configures ``etcd://``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from wazod.errors import ConfigError
from wazod.ha.arbiter import Arbiter, HttpArbiter
from wazod.secrets import mask_text


def make_arbiter(config, *, timeout: float | None = None) -> Arbiter | None:
    """The arbiter of ``config.ha.arbiter`` (None when none is configured); ConfigError for a bad URL."""
    ha = config.ha
    url = ha.arbiter
    if not url:
        return None
    if not ha.remote_address:
        raise ConfigError("ha.arbiter needs the peer's address (ha.remote_address or ha.conf)")
    from wazod.ha.probes import read_token

    scheme = urlsplit(url).scheme
    bound = timeout if timeout is not None else ha.effective_round_timeout
    if scheme in ("http", "https"):
        return HttpArbiter(url, ha.remote_address, token=read_token(ha.peer_token_file), timeout=bound,
                           node_name=config.node_name)
    if scheme == "etcd":
        try:
            from wazod.ha.arbiter_etcd import make_etcd_arbiter
        except ImportError as e:
            raise ConfigError(f"ha.arbiter {mask_text(url)}: etcd arbiter not available in this build ({e})") from None
        return make_etcd_arbiter(config)
    raise ConfigError(f"ha.arbiter {mask_text(url)}: unknown scheme {scheme!r} (http:// or etcd://)")
