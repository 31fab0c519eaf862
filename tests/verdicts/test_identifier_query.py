"""Optional extra identifiers from an immediate query: recorded at onboarding, compared later."""

from models import PmsType, Verdict
from reconciler.usecases.onboarding import onboard_practice, parse_request
from worker import wiring

SQL = "SELECT abn FROM practice_details"


def onboard_with_abn(world, abn: str) -> int:
    guid = world.sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    world.sim.set_query_rows(guid, [{"abn": abn}])
    with wiring.unit_of_work() as unit:
        practice = onboard_practice(unit, world.client, parse_request("BestPractice", "BP1"), now=world.clock(),
                                    identifier_query=SQL)
        unit.commit()
        assert practice.identifiers == {"practice_name": "Halo Clinic", "abn": abn}
        return practice.id


def test_same_abn_on_a_new_guid_is_an_infrastructure_change(world):
    pid = onboard_with_abn(world, "12 345 678 901")
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")  # the query rows move with the practice
    deps = world.deps()
    deps.identifier_query = SQL
    from reconciler.usecases.reconcile import reconcile
    from models import Trigger

    assert reconcile(pid, trigger=Trigger.FORBIDDEN, deps=deps).verdict == Verdict.INFRASTRUCTURE_CHANGE
    assert world.sim.call_count("immediate_query", new) == 1


def test_a_different_abn_is_a_business_change_even_with_the_same_name(world):
    pid = onboard_with_abn(world, "12 345 678 901")
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.set_query_rows(new, [{"abn": "98 765 432 109"}])
    deps = world.deps()
    deps.identifier_query = SQL
    from reconciler.usecases.reconcile import reconcile
    from models import Trigger

    result = reconcile(pid, trigger=Trigger.FORBIDDEN, deps=deps)
    assert result.verdict == Verdict.BUSINESS_CHANGE
    assert world.practice(pid).proposed_guid == new
