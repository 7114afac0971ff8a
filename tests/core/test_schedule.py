"""Schedule triggers (flowpods.core.schedule)."""

from __future__ import annotations

from datetime import UTC, datetime

from flowpods.core.model import Schedule
from flowpods.core.schedule import execution_name, next_due, schedules, soonest
from tests.core.simulation import log, make_flow

T = datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)


def trigger(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "every", "type": "Schedule", "cron": "* * * * *", **fields})


class TestSchedules:
    def test_only_enabled_schedules_of_an_enabled_flow_count(self) -> None:
        triggers = [{"id": "on", "type": "Schedule", "cron": "* * * * *"},
                    {"id": "off", "type": "Schedule", "cron": "* * * * *", "disabled": True}]  # fmt: skip
        assert [t.id for t in schedules(make_flow([log("a")], triggers=triggers))] == ["on"]
        assert schedules(make_flow([log("a")], triggers=triggers, disabled=True)) == []


class TestNextDue:
    def test_the_next_minute_after_the_given_time(self) -> None:
        assert next_due(trigger(), T) == datetime(2026, 3, 1, 10, 1, tzinfo=UTC)

    def test_cron_fields_are_read_in_the_trigger_time_zone(self) -> None:
        due = next_due(trigger(cron="0 12 * * *", timezone="Europe/Paris"), T)
        assert due.astimezone(UTC) == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)

    def test_a_due_time_leads_to_the_next_one_not_itself(self) -> None:
        due = next_due(trigger(), T)
        assert next_due(trigger(), due) == datetime(2026, 3, 1, 10, 2, tzinfo=UTC)


class TestSoonestAndName:
    def test_the_trigger_due_first_fires_first(self) -> None:
        assert soonest({"b": T, "a": T.replace(minute=5)}) == "b"

    def test_the_execution_is_named_from_the_due_time_so_it_is_created_once(self) -> None:
        due = datetime(2026, 3, 1, 10, 1, tzinfo=UTC)
        assert execution_name("Nightly_Flow", trigger(id="every"), due) == f"nightly-flow-every-{int(due.timestamp())}"
