"""The validated-configuration cache (wazod.config.cache): what an earlier validation left is used only
for the very same files and code, only from this user's own private directory, and gives back exactly
what pydantic gave.

Why tested: the cache lets `wazod replicate` connect without pydantic and YAML (0.18 s to 0.11 s before
its first connection), and it skips validation. A stale entry would run a job on settings the files no
longer hold; an entry another local user could write would let them choose the DSNs a root process uses.
Each test poisons a real entry (a DSN no file holds) and looks at which value a load returns.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from wazod.config import cache, load_config
from wazod.config.cache import CachedModel
from wazod.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
POISON = "postgresql://poison@127.0.0.9:5999/elsewhere"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("WAZOD_CACHE_DIR", str(directory))
    return directory


def write_config(tmp_path: Path, *, ha: str | None = None, dsn_port: int = 5432, extra: str = "") -> Path:
    config = tmp_path / "etc" / "config.yml"
    config.parent.mkdir(exist_ok=True)
    ha = ha if ha is not None else f"{{node_type: master, remote_address: 10.0.0.2, ha_conf: {tmp_path / 'ha.conf'}}}"
    config.write_text(
        f"node: {{name: n1, state_dir: {tmp_path / 'state'}, wazo_dir: {tmp_path / 'xivo'}}}\n"
        f"ha: {ha}\n"
        f"replication: {{source_dsn: 'postgresql://u:s3cret@127.0.0.1:{dsn_port}/asterisk', db_os_user: null}}\n"
        + extra)
    return config


def load(config: Path):
    return load_config(config, sections=("replication",))


def the_entry(cache_dir: Path) -> Path:
    entries = list(cache_dir.glob("config-*.json"))
    assert len(entries) == 1, entries
    return entries[0]


def poison(cache_dir: Path) -> Path:
    """Change the kept source_dsn to one no file holds, the key and the file's owner and mode untouched."""
    entry = the_entry(cache_dir)
    data = json.loads(entry.read_text())
    data["sections"]["replication"]["fields"]["source_dsn"] = POISON
    entry.write_text(json.dumps(data))
    assert entry.stat().st_mode & 0o777 == 0o600
    return entry


def assert_same_values(real: BaseModel, kept: CachedModel, where: str = "") -> None:
    """Every field, nested models included: equal values of the very same types."""
    assert isinstance(kept, CachedModel), where
    for name in type(real).model_fields:
        r, k = getattr(real, name), getattr(kept, name)
        path = f"{where}.{name}"
        if isinstance(r, BaseModel):
            assert_same_values(r, k, path)
        elif isinstance(r, list):
            assert type(k) is list and len(k) == len(r), path
            for i, (ri, ki) in enumerate(zip(r, k, strict=True)):
                if isinstance(ri, BaseModel):
                    assert_same_values(ri, ki, f"{path}[{i}]")
                else:
                    assert type(ri) is type(ki) and ri == ki, f"{path}[{i}]: {ri!r} != {ki!r}"
        else:
            assert type(r) is type(k) and r == k, f"{path}: {r!r} ({type(r).__name__}) != {k!r} ({type(k).__name__})"


# --- what comes back -------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["shipped", "varied"])
def test_the_kept_values_are_exactly_those_pydantic_validated(tmp_path, cache_dir, monkeypatch, which):
    if which == "shipped":
        config = tmp_path / "config.yml"
        config.write_text((ROOT / "etc" / "wazod" / "config.yml").read_text())
        (tmp_path / "ha.conf").write_text('{"node_type": "slave", "remote_address": "10.1.2.3"}')
        (tmp_path / "conf.d").mkdir()  # this host's Wazo files, in the place of /etc/xivo/ha.conf
        (tmp_path / "conf.d" / "50-here.yml").write_text(f"ha: {{ha_conf: {tmp_path / 'ha.conf'}}}\n")
    else:
        config = write_config(tmp_path, ha=(
            "{node_type: master, remote_address: pbx-2.example.org, witnesses: [10.0.0.1, 10.0.0.254], "
            "probes: [icmp, sip], probe_interval: 0.25, round_timeout: 0.2, fall: 4, "
            "services: {backend: command, start: [[/bin/true, a], [/bin/echo, b]], stop: [[/bin/true]], "
            f"status: [/bin/true]}}, ha_conf: {tmp_path / 'ha.conf'}}}"),
            extra="logging: {level: debug, file: null}\n")
    first = load(config)  # validates, keeps
    assert not isinstance(first.config.replication, CachedModel)
    again = load(config)
    monkeypatch.setenv("WAZOD_CACHE_DIR", "")
    validated = load(config)  # no cache at all: pydantic's models
    for name in ("node", "ha", "logging", "replication"):
        assert_same_values(getattr(validated.config, name), getattr(again.config, name), name)
    assert (again.ha_conf_used, again.files) == (validated.ha_conf_used, validated.files)
    assert again.config.role == validated.config.role
    if which == "shipped":
        assert again.config.ha.remote_address == "10.1.2.3"  # from ha.conf, kept with its digest


def test_a_second_load_reads_the_entry(tmp_path, cache_dir):
    """The poisoning the other tests rely on works: a trusted entry with the files' key is what is used."""
    config = write_config(tmp_path)
    load(config)
    poison(cache_dir)
    assert load(config).config.replication.source_dsn == POISON


def test_what_is_not_a_field_is_asked_of_the_real_model(tmp_path, cache_dir):
    config = write_config(tmp_path)
    (tmp_path / "xivo").mkdir()
    validated = load(config).config
    kept = load(config).config
    assert isinstance(kept.node, CachedModel)
    assert kept.node.on_wazo is True  # a property, of the section's class
    assert kept.ha.effective_round_timeout == validated.ha.effective_round_timeout
    assert kept.log_file == validated.log_file == "/var/log/wazod.log"
    assert kept.replication.model_dump() == validated.replication.model_dump()
    assert kept.ha.services.model_dump() == validated.ha.services.model_dump()
    with pytest.raises(AttributeError, match="read-only"):
        kept.replication.source_dsn = "postgresql:///other"
    assert "s3cret" not in repr(kept.replication) and "********" in repr(kept.replication)


def test_a_section_that_is_not_kept_is_validated_from_the_files_when_read(tmp_path, cache_dir):
    config = write_config(tmp_path, extra="backup: {keep: -1}\n")
    load(config)
    kept = load(config).config
    assert isinstance(kept.replication, CachedModel)
    with pytest.raises(ConfigError, match=r"backup\.keep"):
        kept.backup  # noqa: B018 - the read is the point


# --- when the entry is not used ----------------------------------------------------------------------

@pytest.mark.parametrize("change", ["config.yml, same size and mtime", "conf.d file added", "conf.d file changed",
                                    "conf.d file removed"])
def test_any_change_to_the_files_is_validated_again(tmp_path, cache_dir, change):
    config = write_config(tmp_path)
    conf_d = config.parent / "conf.d"
    conf_d.mkdir()
    if change in ("conf.d file changed", "conf.d file removed"):
        (conf_d / "50-port.yml").write_text("replication: {source_dsn: 'postgresql://u@127.0.0.1:5433/asterisk'}\n")
    before = load(config).config.replication.source_dsn
    poison(cache_dir)
    if change.startswith("config.yml"):
        st = config.stat()
        config.write_text(config.read_text().replace(":5432/", ":5431/"))
        os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert config.stat().st_size == st.st_size
        expected = before.replace(":5432/", ":5431/")
    elif change == "conf.d file added":
        (conf_d / "50-port.yml").write_text("replication: {source_dsn: 'postgresql://u@127.0.0.1:5434/asterisk'}\n")
        expected = "postgresql://u@127.0.0.1:5434/asterisk"
    elif change == "conf.d file changed":
        (conf_d / "50-port.yml").write_text("replication: {source_dsn: 'postgresql://u@127.0.0.1:5435/asterisk'}\n")
        expected = "postgresql://u@127.0.0.1:5435/asterisk"
    else:
        (conf_d / "50-port.yml").unlink()
        expected = "postgresql://u:s3cret@127.0.0.1:5432/asterisk"
    assert load(config).config.replication.source_dsn == expected
    assert load(config).config.replication.source_dsn == expected  # and the new entry says so


def test_a_change_of_ha_conf_is_seen_when_it_filled_the_role(tmp_path, cache_dir):
    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_text('{"node_type": "master", "remote_address": "10.0.0.2"}')
    config = write_config(tmp_path, ha=f"{{ha_conf: {ha_conf}}}")
    assert load(config).config.role == "master"
    assert isinstance(load(config).config.ha, CachedModel)
    ha_conf.write_text('{"node_type": "slave", "remote_address": "10.0.0.1"}')  # the web UI swapped the roles
    loaded = load(config)
    assert (loaded.config.role, loaded.config.ha.remote_address) == ("slave", "10.0.0.1")
    assert loaded.ha_conf_used
    ha_conf.unlink()
    assert load(config).config.role == "disabled"


def test_other_validation_code_is_validated_again(tmp_path, cache_dir, monkeypatch):
    config = write_config(tmp_path)
    load(config)
    poison(cache_dir)
    real = cache.code_fingerprint
    monkeypatch.setattr(cache, "code_fingerprint", lambda: [*real(), "upgraded"])
    assert load(config).config.replication.source_dsn != POISON


def test_the_code_fingerprint_names_every_module_of_the_validation():
    named = {part[0] for part in cache.code_fingerprint() if isinstance(part, list) and len(part) == 3}
    package = ROOT / "wazod" / "config"
    assert named == {str(p) for p in [*package.glob("*.py"), *package.glob("sections/*.py")]}
    assert {part[0] for part in cache.code_fingerprint() if isinstance(part, list) and len(part) == 4} == {
        "pydantic", "pydantic_core", "yaml"}


def test_files_made_invalid_after_a_valid_run_are_an_error(tmp_path, cache_dir):
    config = write_config(tmp_path)
    load(config)
    config.write_text(config.read_text() + "replicaton: {}\n")
    with pytest.raises(ConfigError, match="replicaton: unknown key"):
        load(config)


@pytest.mark.parametrize("how", ["file writable by others", "file writable by its group", "file of another user",
                                 "a symlink", "directory writable by others", "directory of another user"])
def test_an_entry_another_user_could_have_written_is_ignored(tmp_path, cache_dir, how):
    if os.geteuid() != 0 and "another user" in how:
        pytest.skip("giving a file away needs root")
    config = write_config(tmp_path)
    load(config)
    entry = poison(cache_dir)
    if how == "file writable by others":
        entry.chmod(0o606)
    elif how == "file writable by its group":
        entry.chmod(0o620)
    elif how == "file of another user":
        os.chown(entry, 65534, -1)
    elif how == "a symlink":
        target = tmp_path / "elsewhere.json"
        entry.rename(target)
        entry.symlink_to(target)
    elif how == "directory writable by others":
        cache_dir.chmod(0o777)
    else:
        os.chown(cache_dir, 65534, -1)
    assert load(config).config.replication.source_dsn != POISON
    if how.startswith("file") or how == "a symlink":  # replaced by this user's own
        assert not entry.is_symlink() and entry.stat().st_uid == os.geteuid()
        assert entry.stat().st_mode & 0o777 == 0o600
        assert isinstance(load(config).config.replication, CachedModel)
    else:  # nothing kept in a directory others control
        assert not isinstance(load(config).config.replication, CachedModel)


@pytest.mark.parametrize("damage", ["truncated", "not json", "a list", "empty", "no sections", "a foreign class"])
def test_a_damaged_entry_is_ignored_and_replaced(tmp_path, cache_dir, damage):
    config = write_config(tmp_path)
    load(config)
    entry = the_entry(cache_dir)
    text = entry.read_text()
    foreign = json.loads(text)
    foreign["sections"]["replication"]["model"] = "os:system"  # what a model's building would import
    entry.write_text({"truncated": text[: len(text) // 2], "not json": "\x00\xff garbage", "a list": "[1, 2]",
                      "empty": "", "no sections": json.dumps({"key": json.loads(text)["key"], "ha_conf": None}),
                      "a foreign class": json.dumps(foreign)}[damage])
    assert load(config).config.replication.source_dsn.endswith(":5432/asterisk")
    assert isinstance(load(config).config.replication, CachedModel)


def test_the_cache_is_off_when_its_directory_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("WAZOD_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    config = write_config(tmp_path)
    load(config)
    assert not isinstance(load(config).config.replication, CachedModel)
    assert not (tmp_path / "home").exists() and not (tmp_path / "xdg").exists()


def test_the_whole_configuration_is_always_validated_and_leaves_its_sections(tmp_path, cache_dir):
    config = write_config(tmp_path)
    load(config)
    poison(cache_dir)
    whole = load_config(config).config
    assert whole.replication.source_dsn != POISON and not isinstance(whole.replication, CachedModel)
    the_entry(cache_dir).unlink()
    load_config(config)  # `config check`, `run`, a reload...
    assert isinstance(load(config).config.replication, CachedModel)  # ...leave the entry replicate reads
    assert the_entry(cache_dir).stat().st_mode & 0o777 == 0o600
    assert cache_dir.stat().st_mode & 0o777 == 0o700


def test_a_relative_wazod_cache_dir_is_a_configuration_error(tmp_path):
    """The administrator's setting, wrong: said so (exit 2, the variable named), not silently ignored."""
    config = write_config(tmp_path)
    out = subprocess.run([sys.executable, "-m", "wazod", "replicate", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "WAZOD_CACHE_DIR": "cache"})
    assert out.returncode == 2, out.stderr
    assert "$WAZOD_CACHE_DIR: 'cache' is not an absolute path" in out.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("env", [{"XDG_CACHE_HOME": "", "HOME": "relative"}, {"XDG_CACHE_HOME": "relative/xdg"}])
def test_a_user_without_an_absolute_home_has_no_cache(tmp_path, monkeypatch, env):
    """Not the directory the command happens to run in (a user without a home directory)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the rule for users other than root
    monkeypatch.delenv("WAZOD_CACHE_DIR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cache.cache_dir() is None
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path)
    load(config)
    assert not isinstance(load(config).config.replication, CachedModel)
    assert not [p for p in tmp_path.rglob("config-*.json")]


def test_an_entry_that_already_says_the_same_is_not_written_again(tmp_path, cache_dir):
    """`wazod status`, `events`... load the whole configuration at every call: no write (and fsyncs) each time."""
    config = write_config(tmp_path)
    load_config(config)
    before = the_entry(cache_dir).stat()
    load_config(config)
    load(config)
    after = the_entry(cache_dir).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    config.write_text(config.read_text().replace(":5432/", ":5431/"))
    load(config)
    assert the_entry(cache_dir).stat().st_ino != before.st_ino  # a new entry for the new files


# --- found by review: each failed before its fix ------------------------------------------------------

def test_a_daemon_reloading_after_its_code_was_replaced_on_disk_leaves_no_entry_the_new_code_takes(
        tmp_path, cache_dir, monkeypatch):
    """An upgrade under a running daemon, then a reload: it validates with the code it loaded at start,
    so its entry carries that code's fingerprint; a new `replicate` (the new code) validates again."""
    config = write_config(tmp_path)
    monkeypatch.setattr(cache, "_FINGERPRINT", None)
    load_config(config)  # the daemon starts
    the_entry(cache_dir).unlink()
    real = cache._read_fingerprint
    monkeypatch.setattr(cache, "_read_fingerprint", lambda: [*real(), "the upgrade's files"])
    load_config(config)  # its reload: the old code in memory, the new one on disk
    poison(cache_dir)
    monkeypatch.setattr(cache, "_FINGERPRINT", None)  # a new process, which loads the new code
    assert load(config).config.replication.source_dsn != POISON


def test_a_string_json_would_not_give_back_is_not_kept(tmp_path, cache_dir, monkeypatch):
    """YAML's "\\ud83d\\ude00" is two lone surrogates (a DSN libpq cannot take); through JSON they become 😀."""
    config = write_config(tmp_path, extra='sync: {}\n')
    config.write_text(config.read_text().replace("'postgresql://u:s3cret@", '"postgresql://u:\\ud83d\\ude00@')
                      .replace("/asterisk', db_os_user", '/asterisk", db_os_user'))
    first = load(config).config.replication.source_dsn
    assert first == "postgresql://u:\ud83d\ude00@127.0.0.1:5432/asterisk"
    again = load(config).config.replication
    assert not isinstance(again, CachedModel) and again.source_dsn == first
    assert not list(cache_dir.glob("config-*.json"))


@pytest.mark.parametrize("damage", [
    {"ha_conf": "damaged"}, {"ha_conf": 0}, {"ha_conf": ["x"]}, {"ha_conf": {"path": "/etc/xivo/ha.conf"}},
    {"ha_conf": None}, {"sections": {"node": "x", "ha": "x", "logging": "x", "replication": "x"}},
    {"sections": []}, {"sections": {"replication": {"model": "wazod.config.sections.replication:X", "fields": 1}}},
])
def test_an_entry_of_another_shape_is_validated_again_without_a_traceback(tmp_path, cache_dir, damage):
    ha_conf = tmp_path / "ha.conf"
    ha_conf.write_text('{"node_type": "master", "remote_address": "10.0.0.2"}')
    config = write_config(tmp_path, ha=f"{{ha_conf: {ha_conf}}}")
    load(config)
    entry = the_entry(cache_dir)
    data = json.loads(entry.read_text())
    data.update(damage)
    entry.write_text(json.dumps(data))
    if "ha_conf" in damage:
        ha_conf.write_text('{"node_type": "slave", "remote_address": "10.0.0.1"}')  # what a skipped check would miss
    loaded = load(config)
    expected = ("slave", "10.0.0.1") if "ha_conf" in damage else ("master", "10.0.0.2")
    assert (loaded.config.role, loaded.config.ha.remote_address) == expected
    assert loaded.config.replication.source_dsn.endswith(":5432/asterisk")


def test_an_entry_holding_equal_values_of_other_types_is_replaced(tmp_path, cache_dir):
    """1 == True == 1.0 in Python: the entry is compared byte for byte, not value for value."""
    config = write_config(tmp_path)
    load_config(config)
    entry = the_entry(cache_dir)
    data = json.loads(entry.read_text())
    fields = data["sections"]["replication"]["fields"]
    fields.update(rebuild_indexes=1, connect_timeout=10, jitter=False)
    entry.write_text(json.dumps(data))
    load_config(config)  # `config check`, a reload...
    kept = load(config).config.replication
    assert isinstance(kept, CachedModel)
    assert (kept.rebuild_indexes, kept.connect_timeout, kept.jitter) == (True, 10.0, 0)
    assert (type(kept.rebuild_indexes), type(kept.connect_timeout), type(kept.jitter)) == (bool, float, int)
