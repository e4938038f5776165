"""Table-driven tests of the pure HA state machine, in the style of Pacemaker's scheduler tests.

Each case is a sequence of probe rounds (one per second: ``G`` good, ``B`` bad, ``U`` bad because the
peer's name did not resolve;
an optional witness line: ``Y`` a witness answered, ``N`` none did; an optional
maintenance line: ``M`` on) plus events injected before given rounds (the
outcome of an action), and the exact actions expected after each round.
"""

from __future__ import annotations

import pytest

from wazod.ha.machine import Emit, Fence, Machine, Params, Round, Takeover, Unfence, Vote
from wazod.ha.policy import ProbeResult, judge


def _name(action) -> str:
    if isinstance(action, Emit):
        return action.name
    return {Takeover: "TAKEOVER", Fence: "FENCE", Unfence: "UNFENCE"}.get(type(action), "FAILBACK")


def play(params: Params, rounds: str, *, services="stopped", witness: str | None = None,
         maint: str | None = None, done: dict[int, tuple[str, bool]] | None = None):
    """Feed the rounds; returns ({round index: [action names]}, machine)."""
    m = Machine(params, services=services)
    out: dict[int, list[str]] = {}
    for i, ch in enumerate(rounds):
        acts = []
        if done and i in done:
            kind, ok = done[i]
            acts += m.action_done(kind, ok, float(i))
        w = None if witness is None else witness[i] == "Y"
        mt = bool(maint) and maint[i] == "M"
        reason = {"G": "ok", "B": "unreachable", "U": "cannot resolve"}[ch]
        acts += m.observe(Round(float(i), i + 0.9, ch == "G", reason, w, unresolved=ch == "U"), mt)
        if acts:
            out[i] = [_name(a) for a in acts]
    return out, m


P = Params(role="slave", fall=3, rise=3, failback_hold=5.0, flap_window=30.0, flap_limit=4, action_backoff=4.0)
PW = Params(role="slave", fall=3, rise=3, failback_hold=5.0, flap_window=30.0, flap_limit=4,
            action_backoff=4.0, has_witnesses=True)

CASES = [
    # id, params, rounds, kwargs, expected actions per round, final state
    ("healthy-start", P, "GGGGGG", {}, {}, "standby"),
    ("fall-rounds-then-takeover", P, "GGGBBB", {}, {5: ["ha_master_down", "TAKEOVER"]}, "taking_over"),
    ("short-outages-ignored", P, "GGGBBGBBGBB", {}, {}, "standby"),
    ("start-with-master-down", P, "BBB", {}, {2: ["ha_master_down", "TAKEOVER"]}, "taking_over"),
    ("restart-while-active-keeps-services", P, "BBBBB", {"services": "running"}, {2: ["ha_master_down"]}, "active"),
    ("restart-while-active-master-back", P, "GGGGGGG", {"services": "running"}, {5: ["FAILBACK"]}, "failing_back"),
    ("no-repeat-while-pending", P, "BBBBBBBB", {}, {2: ["ha_master_down", "TAKEOVER"]}, "taking_over"),
    ("takeover-then-failback-after-hold", P, "BBBBGGGGGGGG", {"done": {3: ("takeover", True)}},
     {2: ["ha_master_down", "TAKEOVER"], 6: ["ha_master_up"], 9: ["FAILBACK"]}, "failing_back"),
    ("failback-completes-standby", P, "BBBBGGGGGGGG", {"done": {3: ("takeover", True), 10: ("failback", True)}},
     {2: ["ha_master_down", "TAKEOVER"], 6: ["ha_master_up"], 9: ["FAILBACK"]}, "standby"),
    # one bad round in the hold restarts it (the master is not down: no event)
    ("hold-restarts-on-bad-round", P, "BBBBGGGGBGGGGGGG", {"done": {3: ("takeover", True)}},
     {2: ["ha_master_down", "TAKEOVER"], 6: ["ha_master_up"], 14: ["FAILBACK"]}, "failing_back"),
    # blind rounds (nothing answered, not even a witness) say nothing about the master: no down verdict
    ("isolated-no-takeover", PW, "BBBBB", {"witness": "NNNNN"}, {2: ["ha_isolated"]}, "isolated"),
    # the witness is back, the master still silent: fall fresh rounds prove it down
    ("isolated-then-witness-back", PW, "BBBBBBB", {"witness": "NNNNYYY"},
     {2: ["ha_isolated"], 6: ["ha_master_down", "TAKEOVER"]}, "taking_over"),
    # issue 19.1: the witness answers one round before the master is counted up again: no takeover
    ("isolation-ends-no-false-takeover", PW, "GGGBBBBBBBGGGGG", {"witness": "YYYNNNNNNYYYYYY"},
     {5: ["ha_isolated"]}, "standby"),
    # a master declared down before an isolation (no action: maintenance) must be proven down again after it
    ("down-before-isolation-needs-fresh-rounds", PW, "BBBBBBBBBB",
     {"witness": "YYYNNNYYYY", "maint": "MMMMMM...."},
     {2: ["ha_master_down"], 5: ["ha_isolated"], 8: ["TAKEOVER"]}, "taking_over"),
    # one blind round among witnessed failures neither counts nor resets
    ("witness-seen-in-failing-rounds", PW, "GGBBBB", {"witness": "YYYYNY"}, {5: ["ha_master_down", "TAKEOVER"]},
     "taking_over"),
    # issue 21.4: a name that does not resolve is this node's problem, not the master's death
    ("unresolved-name-is-not-master-down", P, "UUUUUU", {}, {2: ["ha_isolated"]}, "isolated"),
    ("unresolved-then-resolves-healthy", P, "GGGUUUUGGG", {}, {5: ["ha_isolated"]}, "standby"),
    ("maintenance-reports-only", P, "BBBBB", {"maint": "MMMMM"}, {2: ["ha_master_down"]}, "master_down"),
    ("maintenance-off-acts", P, "BBBBB", {"maint": "MMMM."}, {2: ["ha_master_down"], 4: ["TAKEOVER"]}, "taking_over"),
    ("failed-takeover-retried-after-backoff", P, "BBBBBBBBBBBBBBBBB",
     {"done": {3: ("takeover", False), 8: ("takeover", False)}},
     # failure at 3: next try at 3+4=7; failure at 8: backoff doubled, next at 8+8=16
     {2: ["ha_master_down", "TAKEOVER"], 7: ["TAKEOVER"], 16: ["TAKEOVER"]}, "taking_over"),
    # services in an unknown state (a failed action) with the master up: given back after the hold
    ("unknown-services-master-up-failback", P, "GGGGGGG", {"services": "unknown"}, {5: ["FAILBACK"]},
     "failing_back"),
    # witnesses silent while the master answers: nothing to decide, no isolation
    ("witnesses-lost-master-up-no-isolation", PW, "GGGGGG", {"witness": "NNNNNN"}, {}, "standby"),
    # already active (services running) when the witnesses go silent: stays active, not "isolated"; the
    # blind rounds say nothing about the master (issue 19): no ha_master_down, the isolation is told
    ("witnesses-lost-while-active", PW, "BBBBB", {"services": "running", "witness": "NNNNN"},
     {2: ["ha_isolated"]}, "active"),
    # isolated, master back, lost again: the second isolation is told as well
    ("isolated-twice-told-twice", PW, "BBBBGGGBBB", {"witness": "NNNNNNNNNN"},
     {2: ["ha_isolated"], 9: ["ha_isolated"]}, "isolated"),
    ("master-role-watches-slave", Params(role="master", fall=3, rise=3), "GGGBBBBGGGG", {},
     {5: ["ha_slave_down"], 9: ["ha_slave_up"]}, "master"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_machine_table(case):
    _id, params, rounds, kwargs, expected, final = case
    out, m = play(params, rounds, **kwargs)
    assert out == expected
    assert m.state == final


def test_flapping_freezes_after_one_takeover_and_thaws_after_the_window():
    p = Params(role="slave", fall=2, rise=2, failback_hold=10.0, flap_window=12.0, flap_limit=3, action_backoff=4.0)
    # link flapping: 2 s down, 2 s up, then steady up
    rounds = "BBGGBBGGBBGG" + "G" * 20
    out, m = play(p, rounds, done={2: ("takeover", True)})
    names = [n for i in sorted(out) for n in out[i]]
    assert names.count("TAKEOVER") == 1
    assert names[:2] == ["ha_master_down", "TAKEOVER"]
    flap_on = [i for i in sorted(out) if "ha_flapping" in out[i]]
    assert len(flap_on) == 2  # on, then off once the window calmed down
    # frozen in between: no failback while flapping (the master never stays up for the hold in between: the
    # hold, not the freeze, is what damps a failback)
    assert "FAILBACK" not in [n for i in sorted(out) if flap_on[0] <= i < flap_on[1] for n in out[i]]
    # the hold (10 s of continuous health) decides
    assert "FAILBACK" in out[max(out)]
    assert m.state == "failing_back"


def test_own_isolation_is_not_counted_as_master_transitions():
    """Issue 19.4: blackhole + failback, then an isolation of the slave, then the master's Asterisk dies:
    the takeover must come at once, not after a flapping freeze (the isolation moved no verdict)."""
    p = Params(role="slave", fall=2, rise=2, failback_hold=3.0, flap_window=100.0, flap_limit=4,
               action_backoff=4.0, has_witnesses=True)
    rounds = "BB" + "GGGGG" + "BBBB" + "GGG" + "BB"
    witness = "YY" + "YYYYY" + "NNNN" + "YYY" + "YY"
    out, m = play(p, rounds, witness=witness, done={2: ("takeover", True), 7: ("failback", True)})
    names = [n for i in sorted(out) for n in out[i]]
    assert "ha_flapping" not in names
    assert out[len(rounds) - 1] == ["ha_master_down", "TAKEOVER"]
    assert names.count("ha_isolated") == 1


def test_event_data_carries_timing():
    m = Machine(P, services="stopped")
    acts = []
    for i in range(3):
        acts += m.observe(Round(10.0 + i, 10.4 + i, False, "sip_dead"))
    down, takeover = acts
    assert down.name == "ha_master_down"
    assert down.data["reason"] == "sip_dead"
    assert down.data["first_failure_mono"] == 10.0
    assert down.data["detection_s"] == pytest.approx(2.4)
    assert takeover.data["first_failure_mono"] == 10.0 and takeover.data["decided_mono"] == 12.4


def test_flapping_then_state_reported_when_it_changed_meanwhile():
    p = Params(role="slave", fall=1, rise=1, failback_hold=100.0, flap_window=5.0, flap_limit=2)
    m = Machine(p, services="running")
    names = []
    for i, ch in enumerate("GBGBGBGGGGGGGG"):
        names += [_name(a) for a in m.observe(Round(float(i), i + 0.5, ch == "G"))]
    # frozen while flapping (no events, no failback); when it thaws, the state that changed
    # meanwhile (the master is up again) is told once
    assert names == ["ha_master_down", "ha_master_up", "ha_master_down", "ha_flapping", "ha_flapping", "ha_master_up"]


def test_maintenance_holds_through_a_tick_that_does_not_mention_it():
    m = Machine(P, services="stopped")
    acts = [a for i in range(3) for a in m.observe(Round(float(i), i + 0.9, False), maintenance=True)]
    assert [_name(a) for a in acts] == ["ha_master_down"]
    assert m.tick(10.0) == []  # time passes; maintenance still on
    assert m.frozen == "maintenance"
    assert [_name(a) for a in m.tick(11.0, maintenance=False)] == ["TAKEOVER"]


def test_failback_when_the_hold_is_reached_exactly_and_retry_when_the_backoff_ends_exactly():
    m = Machine(Params(role="slave", fall=1, rise=1, failback_hold=3.0), services="running")
    assert m.observe(Round(10.0, 10.5, True)) == []
    assert m.observe(Round(11.0, 12.0, True)) == []  # held 2.0 s
    assert [_name(a) for a in m.observe(Round(12.0, 13.0, True))] == ["FAILBACK"]  # held 3.0 s: the hold
    m = Machine(Params(role="slave", fall=1, rise=1, action_backoff=4.0), services="stopped")
    assert [_name(a) for a in m.observe(Round(0.0, 0.5, False))] == ["ha_master_down", "TAKEOVER"]
    assert m.action_done("takeover", False, 1.0) == []  # next try at 1 + 4 = 5
    assert m.observe(Round(3.0, 4.9, False)) == []
    assert [_name(a) for a in m.observe(Round(4.0, 5.0, False))] == ["TAKEOVER"]


def test_master_up_tells_how_long_it_was_down():
    m = Machine(Params(role="slave", fall=1, rise=1, failback_hold=100.0), services="running")
    m.observe(Round(0.0, 0.5, True))
    (down,) = m.observe(Round(1.0, 1.5, False))
    (up,) = m.observe(Round(10.0, 10.75, True))
    assert (down.name, up.name) == ("ha_master_down", "ha_master_up")
    assert up.data["down_for_s"] == pytest.approx(9.25) and up.data["rounds"] == 1


def _flap(rounds: str) -> tuple[Machine, list[str]]:
    """fall = rise = 1, flap limit 2 in 10 s; rounds end at i + 0.5 (the transitions' times)."""
    m = Machine(Params(role="slave", fall=1, rise=1, failback_hold=100.0, flap_window=10.0, flap_limit=2),
                services="running")
    acts = [a for i, ch in enumerate(rounds) for a in m.observe(Round(float(i), i + 0.5, ch == "G"))]
    freeze = [a for a in acts if _name(a) == "ha_flapping"]
    assert [a.data["active"] for a in freeze] == [True]
    assert freeze[0].data["transitions"] == 3 and freeze[0].data["limit"] == 2
    return m, [_name(a) for a in acts]


def test_isolation_event_says_no_witness_was_reached():
    m = Machine(PW, services="stopped")
    acts = [a for i in range(3) for a in m.observe(Round(float(i), i + 0.9, False, "unreachable", False))]
    assert [_name(a) for a in acts] == ["ha_isolated"]  # blind rounds: no verdict on the master (issue 19)
    assert acts[0].data["witnesses_reached"] is False and acts[0].data["cause"] == "no_witness"
    assert acts[0].data["rounds"] == 3 and acts[0].data["master_down_since_mono"] is None
    # declared down by witnessed rounds first, then blind: the event says since when
    m = Machine(PW, services="stopped")
    for i in range(3):
        m.observe(Round(float(i), i + 0.9, False, "unreachable", True), maintenance=True)
    acts = [a for i in range(3, 6) for a in m.observe(Round(float(i), i + 0.9, False, "unreachable", False),
                                                      maintenance=True)]
    assert [_name(a) for a in acts] == ["ha_isolated"] and acts[0].data["master_down_since_mono"] == 2.9


def test_flapping_thaws_as_soon_as_the_window_holds_the_limit():
    m, names = _flap("GBGBG")  # transitions at 1.5, 2.5, 3.5, 4.5: the third one freezes
    assert names == ["ha_master_down", "ha_master_up", "ha_master_down", "ha_flapping"]
    assert m.tick(12.4) == [] and m.frozen == "flapping"  # 2.5, 3.5, 4.5 still inside the 10 s window
    # at 12.5 the one at 2.5 leaves the window: 2 left, the limit: thawed, and the master (up since
    # the last round, unreported while frozen) is told
    thawed = m.tick(12.5)
    assert [_name(a) for a in thawed] == ["ha_flapping", "ha_master_up"]
    assert thawed[0].data["active"] is False and m.frozen is None
    assert thawed[1].data == {"after_flapping": True}


def test_flapping_thaws_when_the_window_empties_at_once_and_tells_nothing_already_told():
    m, names = _flap("GBGBGB")  # ends down, as last told before the freeze
    assert names == ["ha_master_down", "ha_master_up", "ha_master_down", "ha_flapping"]
    assert [_name(a) for a in m.tick(100.0)] == ["ha_flapping"]  # all transitions old at once
    assert m.frozen is None and m.state == "active"


POLICY_CASES = [
    ("unreachable_or_sip_dead", [("icmp", True, True), ("sip", True, True)], (True, "ok")),
    ("unreachable_or_sip_dead", [("icmp", False, False), ("sip", False, False)], (False, "unreachable")),
    ("unreachable_or_sip_dead", [("icmp", True, True), ("sip", False, True)], (False, "sip_dead")),
    ("unreachable_or_sip_dead", [("icmp", False, False), ("sip", True, True)], (True, "ok")),
    ("unreachable", [("icmp", True, True), ("sip", False, True)], (True, "ok")),
    ("unreachable", [("icmp", False, False)], (False, "unreachable")),
    ("any_failed", [("icmp", True, True), ("tcp:5432", False, True)], (False, "failed:tcp:5432")),
    ("any_failed", [], (False, "unreachable")),
]


@pytest.mark.parametrize("policy,results,expected", POLICY_CASES)
def test_policy(policy, results, expected):
    rs = [ProbeResult(p, "10.0.0.1", ok, reach) for p, ok, reach in results]
    assert judge(policy, rs) == expected


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown HA policy 'sometimes'"):
        judge("sometimes", [])


# --- the third vote (issue 19): one more input of a round ------------------------------------------------
def _vote(ch: str) -> Vote | None:
    """``-`` unreachable arbiter; ``u``/``d``/``?`` reachable, peer up/down/unknown; upper case: the peer
    holds the services (owner), ``s``: this node holds them (peer down)."""
    if ch == "-":
        return Vote(False)
    owner = "peer" if ch.isupper() else ("self" if ch == "s" else None)
    peer = {"u": True, "d": False, "?": None, "s": False}[ch.lower()]
    return Vote(True, peer, owner)


def play_votes(params: Params, rounds: str, votes: str, *, services="stopped", done=None):
    m = Machine(params, services=services)
    out: dict[int, list[str]] = {}
    for i, ch in enumerate(rounds):
        acts = []
        if done and i in done:
            acts += m.action_done(*done[i], float(i))
        acts += m.observe(Round(float(i), i + 0.9, ch == "G", "ok" if ch == "G" else "unreachable",
                                vote=_vote(votes[i])))
        if acts:
            out[i] = [_name(a) for a in acts]
    return out, m


PA = Params(role="slave", fall=3, rise=3, failback_hold=5.0, flap_window=30.0, flap_limit=4, action_backoff=4.0,
            has_arbiter=True)
MA = Params(role="master", fall=3, rise=3, failback_hold=5.0, has_arbiter=True)

VOTE_CASES = [
    # the master is down here and for the arbiter: takeover
    ("arbiter-agrees-takeover", PA, "GGGBBB", "uuuddd", {}, {5: ["ha_master_down", "TAKEOVER"]}, "taking_over"),
    # the arbiter still sees the master (the link between the nodes is cut): ha_partitioned, never a takeover
    ("link-cut-partitioned", PA, "GGGBBBBBB", "uuuuuuuuu", {}, {5: ["ha_partitioned"]}, "partitioned"),
    # the arbiter unreachable too: isolated, no takeover, no master_down
    ("arbiter-unreachable-isolated", PA, "GGGBBBBB", "uuu-----", {}, {5: ["ha_isolated"]}, "isolated"),
    # the arbiter has not decided yet: the slave waits for it (one round later)
    ("arbiter-late-agreement", PA, "GGGBBBBB", "uuuuu?dd", {},
     {5: ["ha_master_down"], 6: ["TAKEOVER"]}, "taking_over"),
    # the arbiter alone goes down: nothing moves on a healthy pair
    ("arbiter-down-alone", PA, "GGGGGGGG", "uuu-----", {}, {}, "standby"),
    # an active slave that loses master and arbiter fences itself within fall rounds
    ("active-slave-fences", PA, "BBBBBB", "ss-----"[:6], {"services": "running"},
     {4: ["ha_isolated", "FENCE"]}, "fencing"),
]


@pytest.mark.parametrize("case", VOTE_CASES, ids=[c[0] for c in VOTE_CASES])
def test_machine_with_arbiter(case):
    _id, params, rounds, votes, kwargs, expected, final = case
    out, m = play_votes(params, rounds, votes, **kwargs)
    assert out == {k: v for k, v in expected.items() if v}
    assert m.state == final


def test_master_fences_without_quorum_and_unfences_when_the_slave_does_not_hold_the_services():
    # master serving; cut from slave and arbiter: fence after fall rounds; quorum back, nobody owns: unfence
    out, m = play_votes(MA, "GGGBBBBBBGGG", "sss---u-uuuu", services="running",
                        done={7: ("fence", True), 11: ("unfence", True)})
    assert out[5] == ["ha_slave_down", "ha_isolated", "FENCE"] or out[5][-1] == "FENCE"
    assert "UNFENCE" in [n for i in out for n in out[i]]
    assert m.state == "master" and m.services == "running" and not m.fenced


def test_fenced_master_waits_while_the_slave_holds_the_services():
    # fenced; the arbiter is back and says the slave holds the services; the slave is not reachable: wait
    out, m = play_votes(MA, "BBBBBBBBB", "---DDDDDD", services="running", done={3: ("fence", True)})
    assert [n for i in out for n in out[i]].count("UNFENCE") == 0
    assert m.state == "fenced"
    # the slave becomes reachable too (full heal): the master starts again, the slave fails back
    for i in range(9, 12):
        acts = m.observe(Round(float(i), i + 0.9, True, vote=Vote(True, True, "peer")))
    assert "UNFENCE" in [_name(a) for a in acts] or m.pending == "unfence"


def test_self_fence_false_keeps_an_isolated_master_serving():
    p = Params(role="master", fall=3, rise=3, has_arbiter=True, self_fence=False)
    out, m = play_votes(p, "GGGBBBBBB", "sss------", services="running")
    assert "FENCE" not in [n for i in out for n in out[i]] and m.services == "running"


def test_a_flapping_master_still_unfences_once_its_quorum_is_back():
    """Flap damping holds takeovers and failbacks, not the restart of a fenced master's own services."""
    p = Params(role="master", fall=1, rise=1, flap_window=100.0, flap_limit=1, has_arbiter=True)
    m = Machine(p, services="running")
    for i, (good, vote) in enumerate([(False, "s"), (True, "s"), (False, "s"), (True, "s")]):
        m.observe(Round(float(i), i + 0.5, good, vote=_vote(vote)))
    assert m.flapping
    acts = m.observe(Round(4.0, 4.5, False, vote=Vote(False)))
    assert [_name(a) for a in acts][-1] == "FENCE"
    m.action_done("fence", True, 5.0)
    acts = m.observe(Round(6.0, 6.5, True, vote=_vote("s")))
    assert "UNFENCE" in [_name(a) for a in acts]


def test_ownership_lost_fences_a_node_running_the_services():
    """An etcd lease no longer proven (renew False) on the node running the services: it stops them."""
    m = Machine(MA, services="running")
    m.observe(Round(0.0, 0.5, True, vote=_vote("s")))
    assert [_name(a) for a in m.ownership_lost("lease")] == ["FENCE"]
    assert m.ownership_lost("lease") == []  # one fence at a time
    m.action_done("fence", True, 1.0)
    assert m.fenced and m.state == "fenced"
    p = Params(role="slave", has_arbiter=True, self_fence=False)
    assert Machine(p, services="running").ownership_lost("lease") == []


# --- flap damping holds takeovers, never the give-back to a serving master (issue 19) ----------------------
PF = Params(role="slave", fall=2, rise=2, failback_hold=3.0, flap_window=30.0, flap_limit=4, action_backoff=1.0)
# faults faster than the flap window: takeover, failback, takeover, then the master flaps while the slave holds
# the services (the 5th transition freezes), and comes back to stay
FLAP_ROUNDS = "BB" + "GGGG" + "BB" + "GG" + "BB" + "GGGGGGGG"
FLAP_DONE = {2: ("takeover", True), 6: ("failback", True), 8: ("takeover", True)}


def test_flapping_never_holds_a_failback_to_a_serving_master():
    """Both nodes run the services while the master is up again: holding the give-back until the flap window
    calms down lengthened the overlap (nemesis, flap_window 30 s: 8.8 s beyond the grace). The failback
    comes after failback_hold, frozen or not; the freeze still holds takeovers."""
    out, m = play(PF, FLAP_ROUNDS, services="stopped", done=FLAP_DONE)
    assert out[1] == ["ha_master_down", "TAKEOVER"] and out[5] == ["FAILBACK"] and out[7] == ["ha_master_down",
                                                                                             "TAKEOVER"]
    # the master up again at 13 is the 5th transition in 30 s: frozen, the slave still holding the services
    assert out[13] == ["ha_master_up", "ha_flapping"]
    assert m.flapping and m.services == "running"
    # the master serves: the give-back after failback_hold (3 s from its first good round, 12.0), frozen or not
    assert out[15] == ["FAILBACK"] and 14 not in out
    assert m.state == "failing_back" and m.flapping


def test_flapping_still_holds_a_takeover():
    out, m = play(PF, FLAP_ROUNDS + "BBBB", services="stopped", done={**FLAP_DONE, 16: ("failback", True)})
    assert out[15] == ["FAILBACK"]
    assert m.flapping and m.services == "stopped" and m.peer_up is False  # down again, frozen: no takeover
    assert "TAKEOVER" not in [n for i in out if i > 13 for n in out[i]]
    assert m.state == "flapping"


@pytest.mark.parametrize("vote,gives_back", [("u", True), ("-", False), ("d", False)])
def test_flapping_failback_with_an_arbiter_needs_it_to_see_the_master_serving(vote, gives_back):
    """With an arbiter the master serves again when the arbiter sees it up too; otherwise the freeze holds."""
    p = Params(**{**PF.__dict__, "has_arbiter": True})
    rounds = FLAP_ROUNDS
    votes = "dd" + "uuuu" + "dd" + "uu" + "dd" + "uu" + vote * 6
    out, m = play_votes(p, rounds, votes, services="stopped", done=FLAP_DONE)
    assert out[13] == ["ha_master_up", "ha_flapping"] and m.flapping
    assert ("FAILBACK" in out.get(15, [])) is gives_back
    assert m.services == "running"


def test_own_isolation_and_partition_with_an_arbiter_are_not_master_transitions():
    """Issue 19.4 with an arbiter: the slave cut from everyone (blind rounds) and the link between the nodes
    cut (partitioned rounds) move no verdict, so flap damping never counts them; the master's death after
    them is taken over at once."""
    p = Params(**{**PF.__dict__, "flap_limit": 1, "has_arbiter": True})
    rounds = "GGG" + "BBBB" + "GG" + "BBBB" + "GG" + "BBBB" + "GG" + "BB"
    votes = "uuu" + "----" + "uu" + "uuuu" + "uu" + "----" + "uu" + "dd"
    out, m = play_votes(p, rounds, votes, services="stopped")
    names = [n for i in sorted(out) for n in out[i]]
    assert names == ["ha_isolated", "ha_partitioned", "ha_isolated", "ha_master_down", "TAKEOVER"]
    assert not m.transitions or len(m.transitions) == 1


def test_the_owner_releases_when_its_own_services_die():
    """The owner's duty (etcd): the master's services die behind wazod's back while it holds the ownership:
    Release, state released; it starts nothing while the slave holds the services, and nothing while the
    ownership is free before failback_hold has passed; its services found running again: serving."""
    m = Machine(MA, services="running")
    m.observe(Round(0.0, 0.5, True, vote=_vote("s")))
    acts = m.own_services("stopped", 1.0)
    assert [type(a).__name__ for a in acts] == ["Release"] and acts[0].data["reason"] == "services_stopped"
    assert m.state == "released" and m.services == "stopped"
    assert m.own_services("stopped", 1.1) == []  # one release at a time
    assert m.action_done("release", True, 1.2) == []
    # the slave takes over: the master starts nothing, even past the hold
    for i in range(2, 12):
        assert m.observe(Round(float(i), i + 0.5, True, vote=_vote("D"))) == []
    assert m.state == "released" and not m.fenced
    # the ownership free, but within the hold of the release: nothing either (the slave's chance)
    m2 = Machine(MA, services="running")
    m2.observe(Round(0.0, 0.5, True, vote=_vote("s")))
    m2.own_services("stopped", 1.0)
    m2.action_done("release", True, 1.1)
    assert m2.observe(Round(2.0, 2.5, True, vote=_vote("d"))) == []
    assert m2.observe(Round(3.0, 3.5, False, vote=_vote("-"))) == []  # nor blind
    # nobody took it within failback_hold: claim it back and start (Unfence claims first)
    acts = m2.observe(Round(6.0, 6.5, True, vote=_vote("d")))
    assert [_name(a) for a in acts] == ["UNFENCE"] and acts[0].data["after_release"] is True
    m2.action_done("unfence", True, 7.0)
    assert m2.services == "running" and m2.state == "master"
    # systemd restarted the services meanwhile: serving again, nothing to do
    assert m.own_services("running", 12.0) == [] and m.services == "running" and m.state == "master"
    # a failed release (etcd unreachable) is tried again at the next check
    m3 = Machine(MA, services="running")
    m3.own_services("stopped", 1.0)
    m3.action_done("release", False, 1.1)
    assert [type(a).__name__ for a in m3.own_services("stopped", 2.0)] == ["Release"]
    # no arbiter, or a slave: not this machine's business
    assert Machine(Params(role="master"), services="running").own_services("stopped", 1.0) == []
    assert Machine(PA, services="running").own_services("stopped", 1.0) == []


def test_partition_after_holds_the_partition_report_while_an_etcd_lease_may_still_expire():
    """etcd keeps a dead master "up" (its lease) for up to ttl + 1 s: no ha_partitioned before that, then the
    takeover when the lease is gone; a master still up past it is a partition."""
    p = Params(role="slave", fall=3, rise=3, has_arbiter=True, partition_after=3.0)
    out, m = play_votes(p, "GGGBBBBB", "uuuuuudd")  # the lease expires 3 rounds after the first bad one
    assert out == {6: ["ha_master_down", "TAKEOVER"]}
    out, m = play_votes(p, "GGGBBBBBBB", "uuuuuuuuuu")
    assert out == {6: ["ha_partitioned"]}


def test_revote_between_rounds_takes_over_the_moment_the_lease_expires():
    """The slave has its fall bad rounds, the etcd lease of the dead master still lives: a look between
    rounds that finds it expired takes over at once, without counting a round; nothing otherwise."""
    p = Params(role="slave", fall=3, rise=3, has_arbiter=True, partition_after=3.0)
    out, m = play_votes(p, "GGGBBB", "uuuuuu")
    assert out == {} and m.awaiting_arbiter(6.0)
    assert m.revote(Vote(True, True, "peer"), 6.1) == []  # still up there: nothing
    acts = m.revote(Vote(True, False, None), 6.2)
    assert [_name(a) for a in acts] == ["ha_master_down", "TAKEOVER"] and m.fails == 3
    assert not m.awaiting_arbiter(6.3) and m.revote(Vote(True, False, None), 6.3) == []
    # not while fewer than fall bad rounds, nor without an etcd arbiter (partition_after 0), nor too late
    _, m = play_votes(p, "GGGBB", "uuuuu")
    assert m.revote(Vote(True, False, None), 5.0) == []
    _, m = play_votes(PA, "GGGBBB", "uuuuuu")
    assert not m.awaiting_arbiter(6.0)
    _, m = play_votes(p, "GGGBBBBBBB", "uuuuuuuuuu")
    assert not m.awaiting_arbiter(9.9)
