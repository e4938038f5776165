#!/usr/bin/env bash
# Installs what wazod's tests and demo need on a fresh Debian machine, then the
# project itself in a virtualenv (.venv). Safe to rerun: it installs only what
# is missing. Debian packages are installed only when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  postgresql postgresql-client      # initdb clusters for master and slave, pg_dump/pg_restore/psql
  libpq5                            # libpq itself: wazod.dsn reads DSNs with its PQconninfoParse
  mosquitto                         # MQTT broker for the bus tests
  rabbitmq-server                   # Wazo's bus (AMQP): the tests run a private node of their own
  rsync openssh-server openssh-client  # file sync and copy-back over a real sshd
  snmptrapd snmp                    # SNMP notifications received by a real trap daemon, snmptranslate for the MIB
  erlang-snmp                       # the base MIBs (SNMPv2-SMI, -TC, -CONF) WAZOD-MIB imports: Debian's snmp has none
  iproute2 nftables iputils-ping    # the two-host lab: namespaces, veth, packet drops
  keepalived                        # the failover benchmark's baseline
  pigz tar gzip                     # parallel gzip for backups
  chrony                            # NTP health check against a real tool
  procps util-linux sudo            # pkill, ionice, runuser, prlimit
  curl                              # another local user's HTTP client in the endpoint tests (runuser -u nobody -- curl)
  etcd-server etcd-client           # the etcd arbiter's tests run their own members (etcdctl reads the keys)
  logrotate                         # the log file rotated by the real logrotate with etc/logrotate.d/wazod
  debhelper dh-virtualenv python3-venv python3-argparse-manpage  # the Debian package (tests/test_deb.py builds it)
  lintian systemd man-db            # its checks: lintian, systemd-analyze verify of the unit, the man page
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d: packages must not start their system services (tests start their own)
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.wazod && chmod +x /usr/sbin/policy-rc.d.wazod
    had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy = 1 ] || cp /usr/sbin/policy-rc.d.wazod /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.wazod
    # Debian enables etcd.service for the next boot: a system etcd on 2379 is nothing the tests
    # want (they start their own members on free ports). Only when this run installed it.
    if printf '%s\n' "${missing[@]}" | grep -qx etcd-server && command -v systemctl >/dev/null; then
      systemctl disable etcd.service >/dev/null 2>&1 || true
    fi
  else
    echo "setup: not root, cannot install: ${missing[*]} (tests needing them will be skipped)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -E '^WARNING: Location' || true
echo "setup: ready (.venv)"
