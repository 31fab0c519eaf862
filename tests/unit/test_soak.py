"""The chaos soak's pure parts: the seeded schedule, every invariant on facts that hold it and on
facts that break it, and the stalling proxy (``soak/``; the soak itself: tests/soak/)."""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import replace

import pytest

from soak import invariants as inv
from soak.proxy import StallingProxy
from soak.schedule import FAULTS, MIXES, draw

G = [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)]


# --- the schedule ------------------------------------------------------------------------------------


def test_same_seed_same_schedule_and_another_seed_another():
    assert draw(7, 120, 24) == draw(7, 120, 24)
    assert draw(7, 120, 24).events != draw(8, 120, 24).events


def test_every_fault_ends_within_the_chaos_phase_and_the_mix_is_kept():
    schedule = draw(3, 600, 24, mix="suite")
    faults = [e for e in schedule.events if e.kind == "fault"]
    assert faults and {e.name for e in faults} <= set(MIXES["suite"])
    assert all(e.at < 600 for e in schedule.events)
    for e in faults:
        if FAULTS[e.name]:  # a fault that lasts has its end, after its start
            assert any(x.kind == "fault_end" and x.name == e.name and x.at >= e.at for x in schedule.events)
    assert [e.at for e in schedule.events] == sorted(e.at for e in schedule.events)


def test_a_thirty_minute_full_mix_draws_every_fault_and_more_than_200():
    schedule = draw(2026, 1800, 24)
    assert schedule.count("fault") >= 200
    assert {e.name for e in schedule.events if e.kind == "fault"} == set(FAULTS)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown mix"):
        draw(1, 60, 24, mix="nope")
    with pytest.raises(ValueError):
        draw(1, 60, 2)


# --- the invariants ----------------------------------------------------------------------------------


def practice(pid=1, guid=G[0], name="Clinic Z1", state="active", proposed=None, verdict="unchanged"):
    return inv.PracticeFact(pid, "Zedmed", f"Z{pid}", guid, name, state, proposed, verdict)


def site(guid, status="active", name="Clinic Z1", pid=1, authoritative=True, paired=True):
    return inv.SiteFact(guid, "Zedmed", f"Z{pid}", status, authoritative, name, paired)


def run(rid=1, pid=1, action="marked_verified", old=G[0], new=None, started=100.0, finished=101.0,
        trigger="forbidden", calls=1):
    return inv.RunFact(rid, pid, trigger, started, finished, "x", action, old, new, calls, "worker")


def ticket(tid=1, pid=1, reason="business_change", status="open", opened=100.0, resolved=None,
           kind="contact_practice"):
    return inv.TicketFact(tid, pid, kind, reason, status, opened, resolved)


def facts(**changes) -> inv.Facts:
    base = inv.Facts(practices=[practice()], runs=[run()], tickets=[], outbox=[], sites=[site(G[0])], reports=[],
                     history=[], active_windows={G[0]: [(0.0, None)]}, calls={("find_sites", "Z1"): 1},
                     bursts={1: 1}, max_attempts=3, unrecorded_runs=0, guard_paused=False)
    return replace(base, **changes)


def names(violations):
    return [v.invariant for v in violations]


def test_clean_facts_hold_every_invariant():
    checked, violations = inv.check_all(facts())
    assert violations == []
    assert set(checked) == {name for name, _ in inv.INVARIANTS}


def test_a_practice_left_on_a_replaced_guid_is_a_violation():
    moved = facts(sites=[site(G[0], status="removed", authoritative=False), site(G[1])])
    assert names(inv.check_on_authoritative_guid(moved)) == ["on_authoritative_guid"]
    switched = replace(moved, practices=[practice(guid=G[1])])
    assert inv.check_on_authoritative_guid(switched) == []


def test_new_owners_must_be_held_with_the_proposal_and_ticketed():
    sold = [site(G[0], status="removed", authoritative=False), site(G[1], name="New Owners Pty Ltd")]
    assert names(inv.check_on_authoritative_guid(facts(sites=sold))) == ["on_authoritative_guid"]
    held = facts(sites=sold, practices=[practice(state="held", proposed=G[1])], tickets=[ticket()])
    assert inv.check_on_authoritative_guid(held) == []
    stale_proposal = replace(held, practices=[practice(state="held", proposed=G[2])])
    assert names(inv.check_on_authoritative_guid(stale_proposal)) == ["on_authoritative_guid"]


def test_a_removed_practice_needs_an_open_not_found_ticket_and_initialising_needs_its_verdict():
    gone = [site(G[0], status="removed")]
    assert names(inv.check_on_authoritative_guid(facts(sites=gone))) == ["on_authoritative_guid"]
    assert inv.check_on_authoritative_guid(facts(sites=gone, tickets=[ticket(reason="not_found")])) == []
    installing = [site(G[0], status="removed", authoritative=False), site(G[1], status="initialising")]
    assert names(inv.check_on_authoritative_guid(facts(sites=installing))) == ["on_authoritative_guid"]
    assert inv.check_on_authoritative_guid(
        facts(sites=installing, practices=[practice(verdict="initialising", state="backoff")])) == []


def test_held_on_the_right_guid_is_a_reason_no_longer_true():
    assert names(inv.check_on_authoritative_guid(facts(practices=[practice(state="held", proposed=G[1])]))) == [
        "on_authoritative_guid"]


def test_integrator_wide_tickets_left_open_after_the_faults():
    stuck = facts(tickets=[ticket(pid=None, kind="check_integration", reason="unauthorized")])
    assert names(inv.check_integrator_tickets_still_true(stuck)) == ["ticketed_reason_still_true"]


def test_switching_twice_to_one_guid_or_to_a_site_not_live_is_a_violation():
    windows = {G[0]: [(0.0, 150.0)], G[1]: [(150.0, None)]}
    sites = [site(G[0], status="removed"), site(G[1])]
    good = facts(sites=sites, active_windows=windows,
                 runs=[run(action="switched", old=G[0], new=G[1], started=160, finished=161)])
    assert inv.check_switches(good) == []
    twice = replace(good, runs=[*good.runs, run(2, action="switched", old=G[0], new=G[1], started=170, finished=171)])
    assert names(inv.check_switches(twice)) == ["switch_once_to_live_site"]
    early = replace(good, runs=[run(action="switched", old=G[0], new=G[1], started=120, finished=121)])
    assert names(inv.check_switches(early)) == ["switch_once_to_live_site"]
    unpaired = replace(good, sites=[site(G[0], status="removed"), site(G[1], paired=False)])
    assert names(inv.check_switches(unpaired)) == ["switch_once_to_live_site"]


def test_a_ticket_open_twice_at_once_is_a_violation_one_after_another_is_not():
    one_after = [ticket(1, resolved=150.0, status="resolved"), ticket(2, opened=160.0)]
    assert inv.check_tickets_once(facts(tickets=one_after)) == []
    overlapping = [ticket(1), ticket(2, opened=160.0)]
    assert names(inv.check_tickets_once(facts(tickets=overlapping))) == ["ticket_open_once"]


def test_a_report_with_no_run_after_it_is_a_violation_unless_its_guid_was_replaced():
    late = inv.ReportFact(200.0, G[0], 1, "http", True)
    assert names(inv.check_reports_answered(facts(reports=[late]))) == ["report_answered"]
    assert inv.check_reports_answered(facts(reports=[replace(late, taken=False)])) == []
    answered = facts(reports=[late], runs=[run(started=199, finished=205)])
    assert inv.check_reports_answered(answered) == []
    stale = facts(reports=[late], history=[inv.HistoryFact(1, G[0], 0.0, 150.0)])
    assert inv.check_reports_answered(stale) == []


def test_an_outbox_event_neither_delivered_nor_failed():
    assert names(inv.check_outbox(facts(outbox=[inv.OutboxFact(1, "ticket.opened", False, False, None)]))) == [
        "outbox_delivered_or_failed"]
    assert inv.check_outbox(facts(outbox=[inv.OutboxFact(1, "ticket.opened", False, True, "503")])) == []


def test_halo_calls_beyond_the_coalescing_bound():
    assert names(inv.check_halo_calls(facts(calls={("find_sites", "Z1"): 4}))) == ["halo_calls_bounded"]
    assert inv.check_halo_calls(facts(calls={("find_sites", "Z1"): 4}, unrecorded_runs=1)) == []
    storm = facts(runs=[run(i, started=100 + i, finished=101 + i) for i in range(3)], calls={})
    assert names(inv.check_halo_calls(storm)) == ["halo_calls_bounded"]  # 3 runs for 1 burst


def test_crashed_and_leftover_processes():
    assert names(inv.check_processes_survive(facts(crashes=["worker w0 exited"]))) == ["processes_survive"]
    assert names(inv.check_nothing_left(facts(leftovers=["Valkey still listening"]))) == ["nothing_left_running"]


# --- the proxy ---------------------------------------------------------------------------------------


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def echo_port():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_proxy_forwards_holds_everything_while_stalled_then_forwards_it(echo_port):
    proxy = StallingProxy(echo_port)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            client.sendall(b"one")
            assert client.recv(16) == b"one"
            proxy.stall()
            client.sendall(b"two")
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):  # nothing comes back while stalled
                client.recv(16)
            client.settimeout(10)
            proxy.resume()
            assert client.recv(16) == b"two"
    finally:
        proxy.close()


def test_what_is_still_wrong_past_the_settle_bound_is_a_violation():
    late = facts(late=[(1, "still wrong 50 s after the faults stopped: ... [halo:processing:1 ttl 40 s]")])
    assert names(inv.check_settled_in_time(late)) == ["settled_in_time"]
    assert inv.check_settled_in_time(facts()) == []


def test_the_settle_bound_is_the_longest_wait_the_settings_allow_plus_a_sweep_and_a_report():
    from soak.run import REPORT_EVERY, settle_bound
    from soak.stack import SOAK_SETTINGS

    assert settle_bound(SOAK_SETTINGS) == 20 + 5 + REPORT_EVERY + 15
