"""The client against the in-process simulator, for every error class end to end."""

from __future__ import annotations

import pytest

from models import ForbiddenCause, PmsType
from reconciler.adapters.halo_client import HaloClient
from reconciler.core.halo_errors import (
    HaloBadRequest, HaloBadResponse, HaloForbidden, HaloNotFound, HaloRateLimited, HaloServerError, HaloTimeout,
    HaloUnauthorized,
)
from worker.simulator import Fault, Simulator

KEY = "k-123456"


@pytest.fixture
def sim():
    s = Simulator(key=KEY)
    s.guid = s.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="1", practice_name="A")
    return s


def client(sim, key=KEY, **kw):
    return HaloClient(base_url="https://api.haloconnect.io", subscription_key=key, transport=sim.transport(),
                      sleep=lambda s: None, **kw)


@pytest.mark.parametrize("fault,error,calls", [
    (Fault("ip_not_allowed"), HaloForbidden, 1),
    (Fault("quota_exceeded"), HaloForbidden, 1),
    (Fault("unauthorized"), HaloUnauthorized, 1),
    (Fault("rate_limited", retry_after=2), HaloRateLimited, 4),
    (Fault("server_error", status=504), HaloServerError, 4),
    (Fault("non_json"), HaloBadResponse, 1),
    (Fault("garbage_json"), HaloBadResponse, 1),
], ids=lambda v: getattr(v, "kind", None) or getattr(v, "__name__", str(v)))
def test_faults_become_typed_errors_with_bounded_calls(sim, fault, error, calls):
    sim.inject(fault)
    with pytest.raises(error):
        client(sim).find_sites(PmsType.BEST_PRACTICE, "1")
    assert sim.call_count("find_sites") == calls


def test_forbidden_causes(sim):
    sim.inject(Fault("ip_not_allowed", times=1))
    with pytest.raises(HaloForbidden) as raised:
        client(sim).find_sites(PmsType.BEST_PRACTICE, "1")
    assert raised.value.cause is ForbiddenCause.IP_NOT_ALLOWED
    sim.set_authoritative(sim.guid, False)
    with pytest.raises(HaloForbidden) as raised:
        client(sim).immediate_query(sim.guid, "SELECT 1")
    assert raised.value.cause is ForbiddenCause.NOT_AUTHORITATIVE


def test_wrong_key_unknown_site_and_timeouts(sim):
    with pytest.raises(HaloUnauthorized):
        client(sim, key="wrong").find_sites(PmsType.BEST_PRACTICE, "1")
    with pytest.raises(HaloNotFound):
        client(sim).get_site("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
    sim.inject(Fault("server_error", status=503, times=2))
    assert client(sim).find_sites(PmsType.BEST_PRACTICE, "1")[0].id == sim.guid
    with pytest.raises(HaloBadRequest):
        client(sim)._send(
            "find_sites", "GET", "/integrator/sites", params={"practiceManagementSiteId": "1",
                                                                "practiceManagementName": "BestPractice"})
