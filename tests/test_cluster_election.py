"""The election's and the membership's rules with a fake clock: pure logic, no store, no processes."""

from __future__ import annotations

import random

import pytest

from camfleet.cluster.election import Action, Election, Role, Transition
from camfleet.cluster.membership import Membership
from camfleet.cluster.registry import FleetTiming, Heartbeat, NodeRecord, RecordError

pytestmark = pytest.mark.unit

T = FleetTiming(lease_ttl_s=5.0, renew_s=1.5, margin_s=1.0, heartbeat_s=1.0, heartbeat_ttl_s=4.0, grace_s=2.0)


def _won(e: Election, now: float = 0.0, revision: int = 7) -> None:
    assert e.next_action(now) is Action.CREATE
    e.created(revision, now)
    assert e.role is Role.CANDIDATE and not e.is_leader(now)  # not before a first renewal
    assert e.next_action(now) is Action.RENEW
    e.renewed(revision + 1, now)


def test_leader_only_after_the_first_renewal() -> None:
    changes: list[Transition] = []
    e = Election("a", T, changes.append)
    _won(e)
    assert e.is_leader(0.0) and e.term == 7 and e.revision == 8
    assert [(c.old, c.new) for c in changes] == [(Role.FOLLOWER, Role.CANDIDATE),
                                                 (Role.CANDIDATE, Role.LEADER)]


def test_renewals_keep_the_lease_and_a_silent_store_ends_it_before_it_expires() -> None:
    e = Election("a", T)
    _won(e)
    now = 0.0
    assert e.next_action(now) is Action.WAIT and e.next_wakeup(now) == pytest.approx(1.5)
    for _ in range(10):  # renew on time for a while
        now += 1.5
        assert e.next_action(now) is Action.RENEW
        e.renewed(e.revision + 1, sent_at=now)
        assert e.is_leader(now)
    # the store stops answering: the renewals sent fail, and the leader steps down margin_s before
    # the lease it last renewed (sent at `now`) could expire anywhere
    last = now
    while e.is_leader(now):
        if e.next_action(now) is Action.RENEW:
            e.failed(now)
        now += 0.1
    assert last + T.lease_ttl_s - T.margin_s <= now < last + T.lease_ttl_s - T.margin_s + 0.2
    assert e.next_action(now) is not Action.RENEW and e.role is Role.FOLLOWER and e.term == 0


def test_a_conflict_on_renewal_steps_down_at_once() -> None:
    e = Election("a", T)
    _won(e)
    e.renew_conflict(1.5)
    assert e.role is Role.FOLLOWER and not e.is_leader(1.5)
    assert e.next_action(1.5) is Action.CHECK


def test_a_lost_create_makes_a_follower_that_waits_for_the_key_to_go() -> None:
    e = Election("b", T)
    assert e.next_action(0.0) is Action.CREATE
    e.create_lost(0.0)
    assert e.next_action(0.1) is Action.WAIT
    e.observed("a", term=7, revision=9, now=0.2)
    assert e.holder == "a" and e.holder_term == 7
    assert e.next_action(1.0) is Action.WAIT
    e.vacated(6.0, revision=12)  # the leader's lease expired (its marker)
    assert e.holder is None and e.next_action(6.0) is Action.CREATE


def test_a_stale_watch_event_does_not_unseat_the_new_leader() -> None:
    # the watch delivers the old lease's expiry marker (revision 11) after our create (12) succeeded
    e = Election("b", T)
    e.created(12, 0.0)
    assert e.vacated(0.01, revision=11) is False
    assert e.role == Role.CANDIDATE
    e.renewed(13, 0.02)
    assert e.observed("a", term=3, revision=10, now=0.03) is False  # older news of the previous leader
    assert e.is_leader(0.03)
    assert e.observed("c", term=14, revision=14, now=0.04) is True  # newer: someone else holds it
    assert not e.is_leader(0.04) and e.holder == "c" and e.term == 0


def test_a_late_renewal_answer_after_stepping_down_changes_nothing() -> None:
    e = Election("a", T)
    _won(e)
    e.renew_conflict(1.0)
    e.renewed(99, 1.0)
    assert e.role is Role.FOLLOWER and not e.is_leader(1.0)


def test_two_candidates_sharing_one_store_never_lead_together() -> None:
    """Simulate a KV key with TTL and compare-and-set; random failures and pauses; at most one leader ever."""
    rng = random.Random(5)
    key: dict[str, float | int | str] = {}  # holder, revision, expires
    rev = 0
    nodes = {n: Election(n, T) for n in ("a", "b")}
    paused_until = {"a": 0.0, "b": 0.0}
    now = 0.0
    leaders_seen = set()
    while now < 300:
        now = round(now + 0.05, 2)
        if key and now >= float(key["expires"]):
            rev += 1
            key = {}
            for e in nodes.values():
                e.vacated(now, rev)
        for name, e in nodes.items():
            if now < paused_until[name]:
                continue  # a paused process (GC, SIGSTOP): does nothing, sees nothing
            if rng.random() < 0.002:
                paused_until[name] = now + rng.uniform(1, 8)
            action = e.next_action(now)
            lost = rng.random() < 0.1  # the request or its answer is lost
            if action is Action.CREATE:
                if lost:
                    e.failed(now)
                elif key:
                    e.create_lost(now)
                else:
                    rev += 1
                    key = {"holder": name, "revision": rev, "expires": now + T.lease_ttl_s}
                    e.created(rev, now)
            elif action is Action.RENEW:
                if lost:
                    if rng.random() < 0.5 and key and key["revision"] == e.revision:  # applied, answer lost
                        rev += 1
                        key = {"holder": name, "revision": rev, "expires": now + T.lease_ttl_s}
                    e.failed(now)
                elif key and key["revision"] == e.revision:
                    rev += 1
                    key = {"holder": name, "revision": rev, "expires": now + T.lease_ttl_s}
                    e.renewed(rev, now)
                else:
                    e.renew_conflict(now)
            elif action is Action.CHECK:
                if key:
                    e.observed(str(key["holder"]), 0, int(key["revision"]), now)
                else:
                    e.vacated(now)
        leading = [n for n, e in nodes.items() if e.is_leader(now)]
        assert len(leading) <= 1, f"two leaders at {now}"
        for n in leading:
            assert key and key["holder"] == n, f"{n} leads at {now} without holding the key"
        leaders_seen.update(leading)
    assert leaders_seen == {"a", "b"}  # the pauses made leadership change hands


def test_timing_checks_its_relations() -> None:
    with pytest.raises(ValueError, match="margin"):
        FleetTiming(lease_ttl_s=2.0, renew_s=1.5, margin_s=1.0)
    with pytest.raises(ValueError, match="heartbeat TTL"):
        FleetTiming(heartbeat_s=1.0, heartbeat_ttl_s=1.5)


def _record(node: str) -> NodeRecord:
    return NodeRecord(node_id=node, hostname="h", addresses=[], version="0", labels={}, cores=2,
                      memory_bytes=1, shm_bytes=1)


def test_membership_joins_expires_and_loses_grace_after_the_expiry() -> None:
    m = Membership(T)
    assert [c.new for c in m.registered(_record("n1"))] == ["registered"]
    assert [c.new for c in m.beat(Heartbeat("n1", 1, 100.0), now=10.0)] == ["alive"]
    assert m.beat(Heartbeat("n1", 2, 100.0), now=11.0) == []
    assert m.sweep(16.9) == []
    assert [c.new for c in m.expired("n1", now=15.0)] == ["expired"]  # the key's TTL passed
    assert m.sweep(16.9) == []
    changes = m.sweep(17.0)  # 2 s grace after the expiry (4 s TTL after the last beat at 11.0)
    assert [(c.node_id, c.old, c.new) for c in changes] == [("n1", "expired", "lost")]
    assert [c.new for c in m.beat(Heartbeat("n1", 1, 200.0), now=30.0)] == ["alive"]  # back
    assert m.alive() == ["n1"]


def test_membership_survives_a_store_failover_longer_than_the_ttl() -> None:
    # the server leading the heartbeat bucket dies at 11.5: no beat is written until 20.0, when the new
    # leader expires the old beats (markers) and the agents' next beats get through a moment later
    m = Membership(T)
    m.beat(Heartbeat("n1", 1, 100.0), now=11.0)
    assert m.sweep(19.9) == []  # 8.9 s without a beat, past TTL + grace: no verdict without the store
    assert [c.new for c in m.expired("n1", now=20.0)] == ["expired"]
    assert [c.new for c in m.beat(Heartbeat("n1", 9, 100.0), now=20.8)] == ["alive"]
    assert m.sweep(23.0) == []


def test_membership_needs_the_key_expired_in_both_heartbeat_buckets() -> None:
    # one bucket's stream loses its leader (no beat there, its old key expires once it is back);
    # the other keeps taking beats: the node stays alive
    m = Membership(T)
    m.beat(Heartbeat("n1", 1, 100.0), now=10.0, bucket=0)
    m.beat(Heartbeat("n1", 1, 100.0), now=10.0, bucket=1)
    for t in range(11, 20):
        assert m.beat(Heartbeat("n1", t, 100.0), now=float(t), bucket=1) == []
    assert m.expired("n1", now=17.0, bucket=0) == []
    assert m.sweep(19.5) == [] and m.alive() == ["n1"]
    # then it dies: its key expires in the other bucket too, and grace later it is lost
    assert [c.new for c in m.expired("n1", now=23.0, bucket=1)] == ["expired"]
    assert [c.new for c in m.sweep(25.0)] == ["lost"]
    # a node seen in one bucket only (an older agent) expires with that one
    m.beat(Heartbeat("n2", 1, 100.0), now=30.0)
    assert [c.new for c in m.expired("n2", now=34.0)] == ["expired"]


def test_membership_falls_back_to_a_timer_when_no_expiry_is_seen() -> None:
    m = Membership(T)
    m.beat(Heartbeat("n1", 1, 100.0), now=0.0)
    for t in range(0, 11):  # another node keeps beating: this coordinator's view is live
        m.beat(Heartbeat("n2", t, 100.0), now=float(t))
    assert m.sweep(9.9) == []
    assert [(c.node_id, c.new) for c in m.sweep(10.0)] == [("n1", "lost")]  # 2 * 4 s TTL + 2 s grace


def test_membership_gives_no_timer_verdict_when_every_node_falls_silent_at_once() -> None:
    # the coordinator's own watches stalled (its NATS server killed): every beat stops at once,
    # no expiry is seen; a fresh leader must not count the whole fleet lost on the timer
    m = Membership(T)
    for n in ("n1", "n2", "n3"):
        m.beat(Heartbeat(n, 1, 100.0), now=0.0)
    assert m.sweep(12.0) == [] and m.alive() == ["n1", "n2", "n3"]
    assert m.beat(Heartbeat("n1", 2, 100.0), now=12.1) == []  # the watch is back: beats resume
    # the others' beats of its first moments not in yet: no verdict, the silence counts from 12.1
    assert [c.new for c in m.expired("n2", now=12.2)] == ["expired"]  # expiries still count
    assert [(c.node_id, c.new) for c in m.sweep(14.2)] == [("n2", "lost")]  # grace after its expiry
    for t in range(13, 23):  # n1 beats on every second; n3 stays silent
        m.beat(Heartbeat("n1", t, 100.0), now=float(t))
    assert m.sweep(22.0) == []
    assert [(c.node_id, c.new) for c in m.sweep(22.1)] == [("n3", "lost")]  # 10 s since the view is back


def test_membership_clean_stop_is_lost_at_once_and_restarts_are_reported() -> None:
    m = Membership(T)
    m.beat(Heartbeat("n1", 1, 100.0), now=1.0)
    restarted = m.beat(Heartbeat("n1", 1, 150.0), now=2.0)
    assert [c.reason for c in restarted] == ["restarted"]
    assert [c.new for c in m.beat(Heartbeat("n1", 2, 150.0, leaving=True), now=3.0)] == ["lost"]
    assert m.sweep(100.0) == []


def test_records_reject_hostile_values_with_the_key_named() -> None:
    with pytest.raises(RecordError, match=r"camfleet_nodes/k1: .*cores"):
        NodeRecord.from_bytes(b'{"node_id": "k1", "hostname": "h", "addresses": [], "version": "0", '
                              b'"labels": {}, "cores": "many", "memory_bytes": 1, "shm_bytes": 1}', "k1")
    with pytest.raises(RecordError, match="not JSON"):
        Heartbeat.from_bytes(b"\xff\xfe", "k2")
    with pytest.raises(RecordError, match="expected an object"):
        Heartbeat.from_bytes(b"[1, 2]", "k3")
    record = _record("n9")
    assert NodeRecord.from_bytes(record.to_bytes()) == record
