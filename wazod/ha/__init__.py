"""High availability: watch the peer, decide, take over and give back.

``probes`` measure the peer (ICMP, TCP, SIP OPTIONS, the peer's wazod), ``policy``
turns one round of results into good/bad, ``machine`` is the pure decision
(rounds and monotonic time in, actions out), ``services`` starts and stops the
telephony services, and ``monitor`` wires them into the daemon.
"""
