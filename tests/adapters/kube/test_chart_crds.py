"""The Helm chart ships the CRDs of the repo: `charts/flowpods/crds/` must hold the same files as `crds/`.

Helm installs a chart's `crds/` before its templates and never upgrades them, so a drift here means users
of the chart run the operator against an old schema. Fix a failure by copying: cp crds/*.yaml charts/flowpods/crds/
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
REPO_CRDS = ROOT / "crds"
CHART = ROOT / "charts" / "flowpods"
CHART_CRDS = CHART / "crds"
FIX = "cp crds/*.yaml charts/flowpods/crds/"


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


def test_the_chart_has_the_same_crd_files_as_the_repo() -> None:
    repo, chart = files(REPO_CRDS), files(CHART_CRDS)
    assert repo, "no CRDs in crds/"
    assert sorted(chart) == sorted(repo), f"the chart's crds/ names differ from crds/: {sorted(chart)}; {FIX}"
    drifted = [name for name in repo if chart[name] != repo[name]]
    assert not drifted, f"charts/flowpods/crds/ differs from crds/ in {drifted}; {FIX}"


def test_the_chart_crds_are_the_flowpods_resources() -> None:
    kinds = {yaml.safe_load(path.read_text())["spec"]["names"]["kind"] for path in CHART_CRDS.glob("*.yaml")}
    assert kinds == {"Flow", "Execution"}


def test_the_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == package, "bump Chart.yaml appVersion (the default image tag) with the package"
