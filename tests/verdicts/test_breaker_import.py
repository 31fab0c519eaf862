"""A bulk import spends no call the breaker would not let the workers spend, and teaches the fleet
what Halo refused."""

import pytest

from models import PmsType, Verdict
from reconciler.core.errors import BreakerOpen
from reconciler.core.halo_errors import HaloForbidden
from reconciler.usecases.importing import CsvRow, import_rows
from worker import wiring
from worker.simulator import Fault


def rows(*pms_ids: str) -> list[CsvRow]:
    return [CsvRow(line=n + 2, pms_type="Zedmed", pms_id=pms_id) for n, pms_id in enumerate(pms_ids)]


def test_a_refused_import_trips_the_breaker_and_the_next_import_waits_for_the_probe(world):
    for pms_id in ("ZM1", "ZM2"):
        world.sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
    world.sim.inject(Fault("quota_exceeded"))
    with pytest.raises(HaloForbidden):
        import_rows(rows("ZM1", "ZM2"), unit_of_work=wiring.unit_of_work, client=world.client, now=world.clock,
                    breaker=world.breaker)
    [state] = world.breaker.states()
    assert state.cause == Verdict.QUOTA_EXCEEDED
    calls = world.finds()

    with pytest.raises(BreakerOpen, match="quota_exceeded"):
        import_rows(rows("ZM1", "ZM2"), unit_of_work=wiring.unit_of_work, client=world.client, now=world.clock,
                    breaker=world.breaker)
    assert world.finds() == calls  # not one call while the breaker waits

    world.sim.clear_faults()
    world.clock.advance(seconds=60)  # the probe is due: an import may go (and is the probe)
    summary = import_rows(rows("ZM1", "ZM2"), unit_of_work=wiring.unit_of_work, client=world.client,
                          now=world.clock, breaker=world.breaker)
    assert len(summary.onboarded) == 2
