"""The ledger's ConfigMap adapter: what RBAC's refusal and other API errors become."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowpods.kube import resources
from flowpods.kube.span_ledger import ConfigMapLedger, LedgerForbidden


class FakeKube:
    """Config maps in a dict; `fail` answers every call with that HTTP status."""

    def __init__(self, fail: int | None = None):
        self.fail, self.maps = fail, {}

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.fail:
            raise ApiException(status=self.fail)
        return self.maps.get((namespace, name))

    def put_config_map(self, body: dict[str, Any]) -> None:
        if self.fail:
            raise ApiException(status=self.fail)
        self.maps[(body["metadata"]["namespace"], body["metadata"]["name"])] = body


def test_a_written_ledger_reads_back_and_a_missing_one_is_empty():
    ledger = ConfigMapLedger(FakeKube())  # type: ignore[arg-type]
    assert ledger.read("team") == {}
    ledger.write("team", {"uid-1": 3, "uid-2": 7})
    assert ledger.read("team") == {"uid-1": 3, "uid-2": 7}
    assert ledger.read("other") == {}
    assert resources.LEDGER_NAME in {name for _, name in ledger.kube.maps}


def test_rbac_refusing_the_ledger_is_ledger_forbidden_and_other_errors_pass_through():
    forbidden = ConfigMapLedger(FakeKube(fail=403))  # type: ignore[arg-type]
    with pytest.raises(LedgerForbidden):
        forbidden.read("team")
    with pytest.raises(LedgerForbidden):
        forbidden.write("team", {"uid-1": 1})
    broken = ConfigMapLedger(FakeKube(fail=500))  # type: ignore[arg-type]
    with pytest.raises(ApiException) as raised:
        broken.write("team", {"uid-1": 1})
    assert raised.value.status == 500


def test_the_ledger_keeps_its_entries_under_one_key_and_reads_the_one_key_per_uid_layout_too():
    body = resources.ledger_body("team", {"uid-b": 7, "uid-a": 3})
    assert list(body["data"]) == [resources.LEDGER_KEY]  # one managed field, however many executions
    assert json.loads(body["data"][resources.LEDGER_KEY]) == {"uid-a": 3, "uid-b": 7}
    assert resources.ledger_watermarks(body) == {"uid-a": 3, "uid-b": 7}
    # a ledger written with one key per uid (before stop 14) is read as it was meant
    assert resources.ledger_watermarks({"data": {"uid-a": "3", "uid-b": "7"}}) == {"uid-a": 3, "uid-b": 7}


def test_what_is_not_a_watermark_in_a_ledger_edited_by_hand_is_left_out():
    key = resources.LEDGER_KEY
    assert resources.ledger_watermarks({"data": {key: "not json"}}) == {}
    assert resources.ledger_watermarks({"data": {key: "[1, 2]"}}) == {}
    held = {"ok": 4, "negative": -1, "text": "5", "word": "five", "flag": True, "float": 1.5}
    assert resources.ledger_watermarks({"data": {key: json.dumps(held)}}) == {"ok": 4, "text": 5}
    assert resources.ledger_watermarks({}) == {}
