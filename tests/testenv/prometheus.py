"""A real Prometheus (Debian's `prometheus` package, installed by `make test`) on 127.0.0.1, scraping given
targets every second with exemplar storage on, and a small client for its HTTP query API.

Prometheus asks targets for OpenMetrics first, so exemplars a target serves are stored and can be read back
with /api/v1/query_exemplars.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .kube import wait_for

BINARY = "prometheus"


def binary() -> str:
    found = shutil.which(BINARY) or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        raise AssertionError("prometheus is not installed: `make test` installs Debian's prometheus package")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """One Prometheus process scraping `targets` (host:port) at /metrics; stop() ends it."""

    def __init__(self, directory: Path, targets: list[str], scrape_interval: str = "1s"):
        self.dir = directory
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval},
            "scrape_configs": [{"job_name": "flowpods", "static_configs": [{"targets": targets}]}],
        }
        (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log_path = directory / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary(), f"--config.file={directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--enable-feature=exemplar-storage", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self._ready, 60, f"prometheus at {self.url}", describe=self.log_tail)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def _get(self, path: str, **query: Any) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise AssertionError(f"prometheus {path} {query}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {labels}, "value": [time, "value"]}]."""
        return list(self._get("/api/v1/query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it has no series."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr} has {len(result)} series: {result}"
        return float(result[0]["value"][1])

    def exemplars(self, expr: str, since: float) -> list[dict[str, Any]]:
        """Exemplars of the series `expr` selects, from `since` (unix seconds) to now: [{labels, value, timestamp}]."""
        data = self._get("/api/v1/query_exemplars", query=expr, start=since, end=time.time() + 1)
        return [exemplar for series in data for exemplar in series.get("exemplars", [])]

    def metric_names(self) -> set[str]:
        """Every metric name Prometheus holds (its scraped series' __name__)."""
        return set(self._get("/api/v1/label/__name__/values"))

    def targets_up(self) -> bool:
        active = self._get("/api/v1/targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)
