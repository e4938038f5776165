"""Shared test harness for wazod: real PostgreSQL, mosquitto, sshd and
network-namespace labs, plus polling helpers.

Import helpers as ``from harness import wait_for, PgCluster`` (tests/conftest.py
puts the ``tests`` directory on ``sys.path``).  Fixtures are registered by
tests/conftest.py from :mod:`harness.fixtures`; just request them by name:

* ``pg_cluster``, ``pg_pair``, ``make_pg_cluster``, ``pg_template`` (session)
* ``mosquitto``, ``make_mosquitto``
* ``sshd``, ``make_sshd``
* ``netns_lab``, ``netns_lab_witness``, ``make_netns_lab``
* ``etcd_cluster`` (one member, per module), ``etcd_cluster3`` (three members), ``make_etcd_cluster``
"""
from .etcd import EtcdCluster
from .mqtt import Mosquitto
from .netns import LabHost, NetnsLab, netns_unavailable_reason
from .pg import PgCluster, PgPair, pg_bindir
from .ssh import Sshd
from .util import free_port, kill_process_group, wait_for, wait_for_async, wait_for_port

__all__ = [
    "EtcdCluster", "Mosquitto", "LabHost", "NetnsLab", "netns_unavailable_reason", "PgCluster",
    "PgPair", "pg_bindir", "Sshd", "free_port", "kill_process_group", "wait_for",
    "wait_for_async", "wait_for_port",
]
