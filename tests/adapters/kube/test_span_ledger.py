"""The ledger's ConfigMap adapter: what RBAC's refusal and other API errors become."""

from __future__ import annotations

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
