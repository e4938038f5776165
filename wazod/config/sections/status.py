"""Configuration of the status endpoint (``status:``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from . import Section


class StatusSection(Section):
    listen: str = Field("127.0.0.1:9599", description="status endpoint: GET /health, /liveness, /status, /metrics")
    auth: str = Field(
        "auto", pattern="^(auto|always|never)$",
        description="token required for reads: auto (only when listen is not a loopback address) | always | never; "
        "changes of state always need admin_token_file's token",
    )
    token_file: str | None = Field(
        None, description="file holding a static token accepted in X-Auth-Token (first line); null: none"
    )
    wazo_auth_url: str | None = Field(
        None, description="wazo-auth base URL checking X-Auth-Token tokens, e.g. https://localhost:9497; null: none"
    )
    wazo_auth_verify: bool | str = Field(
        "/usr/share/xivo-certs/server.crt",
        description="TLS verification of wazo-auth: true, false, or a CA file (Wazo's certificate by default)",
    )
    wazo_auth_acl: str | None = Field(
        None, description="ACL the token must carry (sent as ?scope=); null: any valid token"
    )
    token_cache: float = Field(30.0, ge=0, description="seconds a wazo-auth answer is trusted before asking again")
    anonymous_paths: list[str] = Field(
        default_factory=list,
        description="paths served without a token even when auth applies (e.g. /health for the peer probe: "
        "then it shows levels only)",
    )
    admin_token_file: str | None = Field(
        None, description="file holding the admin token (first line): every request that changes state "
        "(POST /maintenance from the peer) needs it in X-Auth-Token, whatever auth says, on loopback too; "
        "mode 600, owned by root, not the token of token_file; the pair shares it. null: no change over HTTP"
    )
    max_connections: int = Field(
        256, ge=1, le=65536, description="connections kept at once; a new one beyond closes the oldest idle one "
        "(from the address holding the most). Lowered to leave 128 file descriptors to the rest of the daemon"
    )
    header_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a connection may stay without completing a request "
        "(after connecting or after its previous answer) before it is closed"
    )
    liveness_limit: float = Field(10.0, gt=0, description="GET /liveness answers 503 when the main loop is this late")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        from wazod.config.listen import parse_listen

        parse_listen(value)
        return value
