"""Property: no reconciliation switches to a GUID without a Get site status answer of `active` on it
in the same reconciliation, whatever Halo shows, whatever the PMS, whatever the policy."""

import itertools

from hypothesis import HealthCheck, given, settings, strategies as st

from models import Action, Availability, PmsType
from worker.simulator import Fault

_ids = itertools.count(1)

MUTATIONS = ["none", "new_guid", "new_guid_unpaired", "new_guid_status_garbage", "new_guid_offline",
             "renamed", "status_server_error", "status_ip_not_allowed", "status_garbage", "pair_server_error"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pms_type=st.sampled_from(list(PmsType)), mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3),
       policy=st.sampled_from(["switch", "switch_and_ticket", "hold"]))
def test_no_switch_without_an_active_status_answer_in_the_same_reconciliation(world, pms_type, mutations, policy):
    pms_id = f"P{next(_ids)}"
    pid = world.onboard(pms_id=pms_id, pms_type=pms_type, pairing_code=None)
    for mutation in mutations:
        world.sim.clear_faults()
        new = None
        if mutation.startswith("new_guid") or mutation.startswith("status_") or mutation == "pair_server_error":
            new = world.sim.change_guid(pms_type, pms_id)
        if mutation == "new_guid_unpaired" or mutation == "pair_server_error":
            world.sim.unpair(new)
        if mutation == "pair_server_error":
            world.sim.inject(Fault("server_error", endpoint="get_site", guid=new, times=2))
        if mutation == "new_guid_status_garbage":
            world.sim.inject(Fault("garbage_json", endpoint="get_site", guid=new))
        if mutation == "new_guid_offline":
            world.sim.set_availability(new, Availability.OFFLINE)
        if mutation == "renamed":
            world.sim.rename(world.practice(pid).halo_guid, f"Renamed {pms_id}")
        if mutation == "status_server_error":
            world.sim.inject(Fault("server_error", endpoint="get_site"))
        if mutation == "status_ip_not_allowed":
            world.sim.inject(Fault("ip_not_allowed", endpoint="get_site"))
        if mutation == "status_garbage":
            world.sim.inject(Fault("garbage_json", endpoint="get_site"))
        before = world.practice(pid).halo_guid
        mark = len(world.sim.requests)

        result = world.reconcile(pid, infrastructure=policy)

        after = world.practice(pid).halo_guid
        if after != before:
            assert result.action == Action.SWITCHED
            assert world.sim.checked_active(after, since=mark), (mutation, result)
        world.clock.advance(hours=2)
    world.sim.clear_faults()
