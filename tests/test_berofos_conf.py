"""bnfos.conf parsing: the format of beroNet's tools, and a clear file:line error for each mistake."""

from __future__ import annotations

import pytest

from wazod.berofos.conf import BnfosConfError, Device, load_devices, parse_bnfos_conf, select_devices
from wazod.errors import ExitCode

GUIDE_EXAMPLE = """\
[fos1]
mac = 00:19:32:00:12:1D
host = 10.100.0.201
login = admin:foobar

[fos2]
mac = 00:11:22:33:44:55
host = 10.100.0.202
login = admin:barfoo
"""


def test_guide_example_two_devices():
    devices = parse_bnfos_conf(GUIDE_EXAMPLE, "/etc/bnfos.conf")
    assert [(d.name, d.host, d.port, d.mac, d.user, d.password) for d in devices] == [
        ("fos1", "10.100.0.201", 80, "00:19:32:00:12:1D", "admin", "foobar"),
        ("fos2", "10.100.0.202", 80, "00:11:22:33:44:55", "admin", "barfoo"),
    ]


def test_comments_ports_hostnames_ipv6_and_no_login():
    text = """\
# written by bnfos --scan -x
; another comment
[fos1]
host = fos-a.example.net:8080
#login = <user>:<password>

[fos2]
host = [::1]:8081
login = admin:pa:ss#word;x

[fos3]
host = fe80::1
"""
    d1, d2, d3 = parse_bnfos_conf(text)
    assert (d1.host, d1.port, d1.user, d1.password, d1.mac) == ("fos-a.example.net", 8080, None, None, None)
    assert (d2.host, d2.port, d2.user, d2.password) == ("::1", 8081, "admin", "pa:ss#word;x")
    assert d2.base_url == "http://[::1]:8081"
    assert (d3.host, d3.port) == ("fe80::1", 80)


def test_password_never_in_repr_or_str():
    (dev,) = parse_bnfos_conf("[fos1]\nhost = 10.0.0.1\nlogin = admin:Sup3rSecret\n")
    assert "Sup3rSecret" not in repr(dev)
    assert "Sup3rSecret" not in str(dev)


def test_missing_file_means_no_berofos(tmp_path):
    assert load_devices(tmp_path / "absent.conf") == []


def test_empty_file_means_no_device(tmp_path):
    (tmp_path / "bnfos.conf").write_text("# nothing yet\n")
    assert load_devices(tmp_path / "bnfos.conf") == []


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("[berofos1]\nhost = 10.0.0.1\n", 1, "bad section name [berofos1]"),
        ("[fos0]\nhost = 10.0.0.1\n", 1, "bad section name [fos0]"),
        ("[fos1]\nhost = 10.0.0.1\n[fos1]\nhost = 10.0.0.2\n", 3, "already defined at line 1"),
        ("[fos1\nhost = 10.0.0.1\n", 1, "malformed section header"),
        ("host = 10.0.0.1\n[fos1]\n", 1, "outside any [fosN] section"),
        ("[fos1]\nhost 10.0.0.1\n", 2, "expected 'key = value'"),
        ("[fos1]\nhots = 10.0.0.1\n", 2, "unknown key 'hots'"),
        ("[fos1]\nhost = 10.0.0.1\nhost = 10.0.0.2\n", 3, "given twice"),
        ("[fos1]\nmac = 00:19:32:00:12:1D\n", 1, "[fos1] has no host"),
        ("[fos1]\nhost =\n", 2, "[fos1] has no host"),
        ("[fos1]\nhost = 10.0.0.1:99999\n", 2, "port must be a number from 1 to 65535"),
        ("[fos1]\nhost = 10.0.0.1:http\n", 2, "port must be a number"),
        ("[fos1]\nhost = bad_host!\n", 2, "neither an IP address nor a host name"),
        ("[fos1]\nhost = 300.1.1.1\n", 2, "neither an IP address nor a host name"),
        ("[fos1]\nhost = [::1\n", 2, "missing ']'"),
        ("[fos1]\nhost = 10.0.0.1\nmac = 00:19:32\n", 3, "is not a MAC address"),
        ("[fos1]\nhost = 10.0.0.1\nlogin = :secret\n", 3, "empty user name"),
    ],
)
def test_each_mistake_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bnfos.conf"
    path.write_text(text)
    with pytest.raises(BnfosConfError) as exc:
        load_devices(path)
    message = str(exc.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message
    assert exc.value.exit_code == ExitCode.USAGE


def test_login_without_colon_is_an_error_that_does_not_echo_it(tmp_path):
    path = tmp_path / "bnfos.conf"
    path.write_text("[fos1]\nhost = 10.0.0.1\nlogin = JustAPassw0rd\n")
    with pytest.raises(BnfosConfError) as exc:
        load_devices(path)
    assert str(exc.value).startswith(f"{path}:3: login must be user:password")
    assert "JustAPassw0rd" not in str(exc.value)


def test_wrapped_login_line_is_not_echoed(tmp_path):
    # the administration guide's own sample wraps "<user>:<password>" onto its own line
    path = tmp_path / "bnfos.conf"
    path.write_text("[fos1]\nhost = 10.0.0.1\nlogin =\nadmin:W4rapped\n")
    with pytest.raises(BnfosConfError) as exc:
        load_devices(path)
    assert str(exc.value).startswith(f"{path}:4: expected 'key = value'")
    assert "W4rapped" not in str(exc.value)
    path.write_text("[fos1]\nhost = 10.0.0.1\nadmin:W4rapped\n")
    with pytest.raises(BnfosConfError) as exc:
        load_devices(path)
    assert str(exc.value).startswith(f"{path}:3: expected 'key = value'")
    assert "W4rapped" not in str(exc.value)


def test_not_utf8_and_unreadable(tmp_path):
    path = tmp_path / "bnfos.conf"
    path.write_bytes(b"[fos1]\nhost = \xff\xfe\n")
    with pytest.raises(BnfosConfError, match="not UTF-8"):
        load_devices(path)
    with pytest.raises(BnfosConfError, match="cannot be read"):
        load_devices(tmp_path)  # a directory


def test_select_devices_by_name():
    devices = parse_bnfos_conf(GUIDE_EXAMPLE)
    assert [d.name for d in select_devices(devices, ["fos2"], "/etc/bnfos.conf")] == ["fos2"]
    assert select_devices(devices, None, "x") == devices
    with pytest.raises(BnfosConfError, match=r"no device fos9 \(devices: fos1, fos2\)"):
        select_devices(devices, ["fos9"], "/etc/bnfos.conf")
    assert isinstance(devices[0], Device)
