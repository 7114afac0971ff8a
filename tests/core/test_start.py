"""Whether and how an execution starts (flowpods.core.start): one check for the operator, the API and local runs."""

from __future__ import annotations

from flowpods.core.model import Flow, FlowError
from flowpods.core.start import MAX_SUBFLOW_DEPTH, Refusal, admission, start_check
from flowpods.core.status import State
from tests.core.simulation import log, make_flow


class TestStartCheck:
    def test_a_valid_enabled_flow_may_start(self) -> None:
        assert start_check("hello", make_flow([log("a")]), "team") is None

    def test_a_missing_flow_is_named_with_its_namespace(self) -> None:
        cannot = start_check("ghost", None, "team")
        assert cannot is not None and cannot.refusal == Refusal.NOT_FOUND
        assert cannot.message == "flow 'ghost' not found in namespace team"
        local = start_check("company.child", None)
        assert local is not None and local.message == "flow 'company.child' not found"

    def test_an_invalid_flow_says_what_is_wrong(self) -> None:
        cannot = start_check("bad", FlowError(["tasks: required", "id: too long"]), "team")
        assert cannot is not None and cannot.refusal == Refusal.INVALID
        assert cannot.message == "flow 'bad' is invalid: tasks: required; id: too long"

    def test_a_disabled_flow_starts_nothing(self) -> None:
        cannot = start_check("off", make_flow([log("a")], disabled=True), "team")
        assert cannot is not None and cannot.refusal == Refusal.DISABLED and cannot.message == "flow 'off' is disabled"

    def test_subflows_may_nest_only_so_deep_whatever_the_flow(self) -> None:
        flow = make_flow([log("a")])
        assert start_check("f", flow, "team", depth=MAX_SUBFLOW_DEPTH) is None
        cannot = start_check("f", flow, "team", depth=MAX_SUBFLOW_DEPTH + 1)
        assert cannot is not None and cannot.refusal == Refusal.TOO_DEEP


class TestAdmission:
    def limited(self, behavior: str) -> Flow:
        return make_flow([log("a")], concurrency={"limit": 2, "behavior": behavior})

    def test_without_a_limit_an_execution_always_runs(self) -> None:
        assert admission("f", make_flow([log("a")]), has_place=False).refused is None
        assert not admission("f", make_flow([log("a")]), has_place=False).queued

    def test_with_a_free_place_it_runs_whatever_the_behavior(self) -> None:
        for behavior in ("QUEUE", "CANCEL", "FAIL"):
            let_in = admission("f", self.limited(behavior), has_place=True)
            assert not let_in.queued and let_in.refused is None

    def test_queue_waits_for_a_place(self) -> None:
        let_in = admission("f", self.limited("QUEUE"), has_place=False)
        assert let_in.queued and let_in.refused is None

    def test_cancel_and_fail_refuse_and_say_why(self) -> None:
        cancel = admission("f", self.limited("CANCEL"), has_place=False)
        fail = admission("f", self.limited("FAIL"), has_place=False)
        assert (cancel.refused, fail.refused) == (State.CANCELLED, State.FAILED)
        assert cancel.reason == "flow 'f' already runs 2 executions (its concurrency limit)"
