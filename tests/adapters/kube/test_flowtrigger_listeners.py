"""Listing a namespace's Flow-trigger listeners validates only the Flows that declare a trigger of type Flow."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from flowpods.core.model import FlowTrigger
from flowpods.kube import flowtriggers


def flow_resource(name: str, triggers: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": name, "namespace": "team", "tasks": [{"id": "t", "type": "Log", "message": "x"}]}
    if triggers is not None:
        spec["triggers"] = triggers
    return {"apiVersion": "flowpods.io/v1alpha1", "kind": "Flow", "metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize("kind", typing.get_args(FlowTrigger.model_fields["type"].annotation))
def test_every_name_of_the_flow_trigger_may_listen(kind: str) -> None:
    assert flowtriggers.may_listen(flow_resource("a", [{"id": "x", "type": kind}]))


@pytest.mark.parametrize(
    "triggers",
    [None, [], "Flow", [{"id": "s", "type": "io.kestra.plugin.core.trigger.Schedule", "cron": "* * * * *"}],
     [{"id": "w", "type": "Webhook", "key": "k"}], ["Flow"], [{"id": "x", "type": "io.kestra.Flows"}]],
)  # fmt: skip
def test_flows_without_a_flow_trigger_do_not(triggers: Any) -> None:
    assert not flowtriggers.may_listen(flow_resource("a", triggers))


class Flows:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list_objects(self, plural: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.items


def test_listeners_are_the_valid_flows_with_a_flow_trigger() -> None:
    listening = flow_resource("listening", [{"id": "after", "type": "Flow", "conditions": []}])
    broken = flow_resource("broken", [{"id": "after", "type": "Flow", "nonsense": 1}])
    scheduled = flow_resource("scheduled", [{"id": "s", "type": "Schedule", "cron": "0 * * * *"}])
    found = flowtriggers.listeners(Flows([scheduled, broken, listening]), "ns")  # type: ignore[arg-type]
    assert [name for name, _ in found] == ["listening"]
