"""Secrets never leave the process: masking of values, DSNs, logs and tracebacks."""

from __future__ import annotations

import io
import json

import pytest

from wazod.logsetup import configure_logging, get_logger
from wazod.secrets import MASK, mask, mask_text

MASK_CASES = [
    ({"password": "p4ss"}, {"password": MASK}),
    ({"community": "public2"}, {"community": MASK}),
    ({"auth_key": "k", "priv_key": "p", "user": "u"}, {"auth_key": MASK, "priv_key": MASK, "user": "u"}),
    ({"login": "admin:secret"}, {"login": MASK}),
    ({"dsn": "postgresql://postgres:topsecret@10.0.0.2/asterisk"}, {"dsn": f"postgresql://postgres:{MASK}@10.0.0.2/asterisk"}),
    ({"dsn": "postgresql:///asterisk"}, {"dsn": "postgresql:///asterisk"}),
    ({"nested": [{"token": "abc"}]}, {"nested": [{"token": MASK}]}),
    ({"password": None}, {"password": None}),
]


@pytest.mark.parametrize("value,expected", MASK_CASES)
def test_mask(value, expected):
    assert mask(value) == expected


def test_mask_text_key_values():
    assert "s3" not in mask_text("host=db password=s3 user=x")
    assert "hunter" not in mask_text("connecting to mqtt://bob:hunter@broker:1883")


def test_logs_mask_secrets_and_tracebacks_have_no_locals():
    buf = io.StringIO()
    configure_logging("debug", json=True, stream=buf)
    log = get_logger("t")
    log.info("connecting", dsn="postgresql://u:pw123@h/db", password="pw456", community="pub789")

    def explode(password="pwlocal"):
        raise ValueError("boom")

    try:
        explode()
    except ValueError:
        log.exception("failed")
    text = buf.getvalue()
    for secret in ("pw123", "pw456", "pub789", "pwlocal"):
        assert secret not in text
    lines = text.strip().splitlines()
    assert lines[0].startswith("<6>") and lines[1].startswith("<3>")
    assert "ValueError: boom" in json.loads(lines[1][3:])["exception"]
