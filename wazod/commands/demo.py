"""``wazod demo``: a self-contained two-node lab on this machine."""

from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common],
                       help="a two-node lab on this machine: replication, failure, takeover, failback, with the events")
    p.add_argument("--loopback", action="store_true",
                   help="run the nodes on loopback addresses even as root (default as root: network namespaces)")
    p.add_argument("--keep", action="store_true", help="keep a copy of the lab directory (configs, logs) afterwards")
    p.set_defaults(handler=_demo, needs_config=False)


def _demo(args, loaded) -> int:
    from wazod.demo import run_demo

    return run_demo(force_loopback=args.loopback, keep=args.keep)
