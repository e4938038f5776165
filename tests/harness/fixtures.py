"""All harness fixtures in one namespace, re-exported by tests/conftest.py.

Kept separate from the classes so that importing ``harness`` from a script
(or a future non-pytest tool) does not require the fixtures, and so that
conftest.py stays a one-line import.
"""
from .etcd import etcd_cluster, etcd_cluster3, make_etcd_cluster
from .mqtt import make_mosquitto, mosquitto
from .netns import make_netns_lab, netns_lab, netns_lab_witness
from .pg import make_pg_cluster, pg_cluster, pg_pair, pg_template, replication_sessions_closed
from .ssh import make_sshd, sshd

__all__ = [
    "etcd_cluster", "etcd_cluster3", "make_etcd_cluster",
    "mosquitto", "make_mosquitto", "make_sshd", "make_netns_lab", "netns_lab", "netns_lab_witness",
    "make_pg_cluster", "pg_cluster", "pg_pair", "pg_template", "replication_sessions_closed", "sshd",
]
