"""TLS certificates: days until expiry and whether the server certificate names this host.

Wazo's HTTPS, SIP TLS and wazo-auth use ``/usr/share/xivo-certs/server.crt``;
nothing warns before it expires, and the administration guide's HTTPS
pitfall is a certificate whose Common Name is not the host name. A file
may hold a chain (certificate + intermediates): every certificate's expiry
counts, the first one is the server's and must carry the name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

from wazod.health.levels import CRITICAL, OK, WARNING, CheckResult, worst


def host_names(section) -> list[str]:
    if section.hostname:
        return [section.hostname.lower()]
    names = {socket.getfqdn().lower(), socket.gethostname().lower()}
    return sorted(n for n in names if n)


def cert_names(cert: x509.Certificate) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    """DNS and IP names of the subject alternative names, else the Common Name (as clients do)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        if names:
            return names
    return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 matching: exact, or one wildcard as the whole left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    try:
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(host)
    except ValueError:
        pass
    if pattern == host:
        return True
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2
    return False


def inspect_file(path: str, section, now: dt.datetime) -> dict:
    try:
        with open(path, "rb") as f:
            pem = f.read()
        from cryptography import x509  # only once there is a certificate to read (megabytes otherwise)

        certs = x509.load_pem_x509_certificates(pem)
    except FileNotFoundError:
        return {"level": WARNING, "problem": "missing"}
    except OSError as e:
        return {"level": WARNING, "problem": f"unreadable: {e.strerror}"}
    except ValueError:
        return {"level": WARNING, "problem": "not a PEM certificate"}
    soonest = min(certs, key=lambda c: c.not_valid_after_utc)
    days_left = (soonest.not_valid_after_utc - now).total_seconds() / 86400
    info = {
        "days_left": round(days_left, 1),
        "not_after": soonest.not_valid_after_utc.isoformat(),
        "expiring_subject": soonest.subject.rfc4514_string(),
        "names": cert_names(certs[0]),
    }
    if days_left < section.critical_days:
        info["level"] = CRITICAL
        info["problem"] = "expired" if days_left < 0 else f"expires in {days_left:.0f} days"
    elif days_left < section.warning_days:
        info["level"] = WARNING
        info["problem"] = f"expires in {days_left:.0f} days"
    else:
        info["level"] = OK
    if section.check_hostname:
        hosts = host_names(section)
        if not any(name_matches(p, h) for p in info["names"] for h in hosts):
            info["name_mismatch"] = {"host": hosts, "certificate": info["names"]}
            if info["level"] == OK:
                info["level"] = WARNING
            info["problem"] = "; ".join(
                x for x in (info.get("problem"), f"does not name this host ({', '.join(hosts)})") if x
            )
    return info


def check_certificates(section) -> CheckResult:
    now = dt.datetime.now(dt.UTC)
    files = {path: inspect_file(path, section, now) for path in section.files}
    if not files:
        return CheckResult(OK, "no certificate configured", {"files": {}})
    level = worst(v["level"] for v in files.values())
    if level == OK:
        soonest = min(files, key=lambda p: files[p]["days_left"])
        summary = f"{soonest} valid {files[soonest]['days_left']:.0f} more days"
    else:
        summary = "; ".join(f"{p}: {v['problem']}" for p, v in files.items() if v["level"] != OK)
    return CheckResult(level, summary, {"files": files})
