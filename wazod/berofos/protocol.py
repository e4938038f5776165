"""The berofos HTTP protocol as beroNet's libbnfos speaks it: the key map and config.txt.

Kept apart from the client so that the client and the simulator agree on the
same facts (which ``cmd`` number and parameter set a value, which
``<cmd>_<key>`` line reads it back), and so that a protocol detail is fixed in
one place. Facts from shared/reference/wazo-behaviour.md ("Berofos failover switch").
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC_KEY = "bnfos_confmap_magic"
MAGIC_VALUE = "0.1"
USER_AGENT = "libbnfos"

MODE_SLAVE = 0  # relay A-D: the ISDN lines go to the slave (also the powered-off state)
MODE_MASTER = 1  # relay A-B: the ISDN lines go to the master


@dataclass(frozen=True)
class Setting:
    """One value of the device: how to set it (``cmd``, ``param``) and where config.txt shows it."""

    name: str
    cmd: int
    param: str
    key: str  # the config.txt key, "<cmd>_<name>"
    boolean: bool = True


# The settings wazod reads or writes (names as ``bnfos --set NAME=...`` knows them).
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("mode", 4, "mode", "4_mode"),
        Setting("modedef", 1, "rm", "1_rm"),
        Setting("scenario", 1, "sz", "1_sz"),
        Setting("wdog", 6, "wen", "6_wen"),
        Setting("wdogdef", 2, "wen", "2_wen"),
    )
}

# What Wazo's setup procedure leaves on the device (administration guide, berofos chapter).
EXPECTED_SETUP = {"wdog": 0, "wdogdef": 0, "scenario": 0, "modedef": 1}


class ConfigTxtError(ValueError):
    """config.txt did not carry the magic line: not a berofos, or an unknown firmware."""


ON_VALUES = ("1", "checked")
OFF_VALUES = ("0", "")  # a flag's 0, an unchecked web-form checkbox


def parse_bool(value: str, key: str = "value") -> int:
    """``1``/``checked`` on, ``0``/empty off: what the device sends. Anything else is a ConfigTxtError.

    libbnfos reads anything else as off, so ``4_mode=banana`` "verified" mode 0 after a switch to
    the slave; wazod refuses an answer it cannot read instead of trusting it.
    """
    text = value.strip()
    if text in ON_VALUES:
        return 1
    if text in OFF_VALUES:
        return 0
    raise ConfigTxtError(f"config.txt says {key}={text[:40]!r}: not a value a berofos sends (1, 0, checked or empty)")


def parse_config_txt(text: str) -> dict[str, str]:
    """``key=value`` lines of /config.txt after the magic line; raises ConfigTxtError without it.

    Lines before the magic line are ignored, as libbnfos does; a magic line with
    another version is accepted (libbnfos only warns), and its version is kept
    under the magic key so the caller can report it.
    """
    values: dict[str, str] = {}
    seen_magic = False
    for raw in text.splitlines():
        line = raw.strip("\r\n")
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip()
        if key == MAGIC_KEY:
            seen_magic = True
            values[MAGIC_KEY] = value.strip()
            continue
        if seen_magic:
            values[key] = value.strip()
    if not seen_magic:
        raise ConfigTxtError(f"config.txt has no '{MAGIC_KEY}=' line: not a berofos answer")
    return values


def read_settings(values: dict[str, str]) -> dict[str, int | None]:
    """The known settings from parsed config.txt values; None for a key the device did not send."""
    out: dict[str, int | None] = {}
    for name, setting in SETTINGS.items():
        raw = values.get(setting.key)
        out[name] = None if raw is None else parse_bool(raw, setting.key)
    return out
