"""The Halo client over real HTTP to the simulator on loopback: what only a socket shows."""

from __future__ import annotations

import pytest

from models import PmsType
from reconciler.adapters.halo_client import HaloClient
from reconciler.core.halo_errors import HaloTimeout
from worker.simulator import Fault, Simulator, serve

pytestmark = pytest.mark.integration

KEY = "k-123456"


def test_timeouts_over_real_http():
    sim = Simulator(key=KEY)
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="1", practice_name="A")
    sim.inject(Fault("timeout", delay=0.5))
    with serve(sim) as server:
        c = HaloClient(base_url=server.url, subscription_key=KEY, timeout=0.1, sleep=lambda s: None)
        with pytest.raises(HaloTimeout):
            c.find_sites(PmsType.BEST_PRACTICE, "1")
        c.close()
    assert sim.call_count("find_sites") == 4
