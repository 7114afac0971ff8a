"""A private Jaeger for fault tests: it can be stopped and started again without losing what it stored, and
it logs every span it receives, so a test can count both what was stored and what was sent twice.

The environment's own Jaeger keeps traces in memory (a restart forgets them). This one stores them with
Badger on disk, and its pipeline also has the `debug` exporter (detailed) writing each received span to its
log, which is appended to across restarts. Badger keeps one copy of a span id that arrives twice, so the
query API cannot show duplicates; the log of receipts can.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

from .cluster import EnvInfo, TestEnvError, free_port
from .jaeger import Jaeger

_TRACE = re.compile(r"^\s*Trace ID\s*:\s*([0-9a-f]{32})\s*$")
_SPAN = re.compile(r"^\s*ID\s*:\s*([0-9a-f]{16})\s*$")


class Collector:
    """Jaeger all-in-one (Badger storage, receipts in its log) on its own loopback ports, under `directory`."""

    def __init__(self, env: EnvInfo, directory: Path):
        self.binary = Path(env.bin_dir) / "jaeger"
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.query_port, self.grpc_port, self.otlp_port, self.otlp_http_port = (free_port() for _ in range(4))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        config = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter", "debug"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}},
            },
            "extensions": {
                "jaeger_storage": {
                    "backends": {
                        "disk": {
                            "badger": {
                                "directories": {"keys": str(self.dir / "keys"), "values": str(self.dir / "values")},
                                "ephemeral": False,
                            }
                        }
                    }
                },
                "jaeger_query": {
                    "storage": {"traces": "disk"},
                    "enable_tracing": False,
                    "http": {"endpoint": f"127.0.0.1:{self.query_port}"},
                    "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"127.0.0.1:{self.otlp_port}"},
                        "http": {"endpoint": f"127.0.0.1:{self.otlp_http_port}"},
                    }
                }
            },
            "processors": {"batch": {"timeout": "100ms"}},
            "exporters": {
                "jaeger_storage_exporter": {"trace_storage": "disk"},
                "debug": {"verbosity": "detailed", "use_internal_logger": False},
            },
        }
        self.config_path = self.dir / "jaeger.yaml"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.jaeger = Jaeger(f"http://127.0.0.1:{self.query_port}")

    @property
    def log_path(self) -> Path:
        return self.dir / "jaeger.log"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise TestEnvError(f"the fault tests' Jaeger exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.jaeger.services()
                for port in (self.otlp_port, self.otlp_http_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=2):
                        pass
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TestEnvError(f"the fault tests' Jaeger did not start:\n{self.log_tail()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM (Jaeger flushes its batch and closes Badger), SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def receipts(self) -> Counter[tuple[str, str]]:
        """(trace id, span id) -> how many times Jaeger received that span, from its log of receipts."""
        counts: Counter[tuple[str, str]] = Counter()
        trace = None
        with self.log_path.open(errors="replace") as log:
            for line in log:
                if match := _TRACE.match(line):
                    trace = match[1]
                elif (match := _SPAN.match(line)) and trace is not None:
                    counts[(trace, match[1])] += 1
                    trace = None
        return counts

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
