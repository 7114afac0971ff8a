"""Warm worker processes for the local runner: one process per attempt, forked from a pre-imported server.

Starting `python -m flowpods worker` for every attempt spends most of its time importing (pydantic models,
the expression language, the OpenTelemetry SDK). Instead, one fork server imports the worker's modules
once, and each attempt is a fresh process forked from it: still one process per attempt, so an attempt
cannot disturb the next one and a kill or a timeout ends exactly that attempt, and still the same code as
in a pod: the child runs the entry point of `flowpods worker` with the attempt's arguments, environment,
working directory and log file, then exits as that command's interpreter would (atexit, flushed streams).

The server is started with the runner (it imports while the flow starts). It talks over one Unix socket:
a request is the attempt (JSON) with the write end of a pipe; the answer is the child's pid; when the
child ends, the server writes its exit code (negative: the signal that ended it, as `subprocess`) to
that pipe, so the runner waits on any number of attempts with one `select`. The server ends when the
runner's end of the socket closes.

The modules are named, not imported, here: the runner's process never imports the worker (the layers
of docs/architecture.md hold); only the server does. Written for this instead of multiprocessing's
`forkserver`, which re-runs the parent's `__main__` script in every child.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

ENTRY = "flowpods.cli.main:main"  # what `python -m flowpods` runs; the child calls it with ["worker"]
PRELOAD = ("flowpods.cli.main", "flowpods.worker.runner")  # what `flowpods worker` imports
# then these, once: what each attempt would build again (the task validators, the command line parser)
WARM_UP = ("flowpods.worker.runner:prepare", "flowpods.cli.main:build_parser")
_HEADER = struct.Struct("!Q")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the fork server's socket closed")
        data += chunk
    return data


# --- the server (its own process) ------------------------------------------------------------------------


def _resolve(target: str) -> Any:
    """The function a "module:function" names (the standard library's `pkgutil.resolve_name`, without importing
    pkgutil into the runner's start)."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def serve(fd: int) -> int:
    """The server's loop; returns only in a forked child, with the attempt's exit code (or 0 at the end)."""
    for name in PRELOAD:
        importlib.import_module(name)
    for target in WARM_UP:
        _resolve(target)()
    control = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's (and the attempts') to handle
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    status_pipes: dict[int, int] = {}  # child pid -> the write end of its status pipe
    while True:
        readable, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            _reap(status_pipes)
        if control.fileno() not in readable:
            continue
        try:
            header, fds, _, _ = socket.recv_fds(control, _HEADER.size, 1)
            if len(header) < _HEADER.size:
                header += _recv_exact(control, _HEADER.size - len(header))
            request = json.loads(_recv_exact(control, _HEADER.unpack(header)[0]))
        except (EOFError, ConnectionError, struct.error):
            return 0  # the runner is gone
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for each in (control.detach(), wake_r, wake_w, *fds, *status_pipes.values()):
                with contextlib.suppress(OSError):
                    os.close(each)
            return _child(request)
        status_pipes[pid] = fds[0]
        control.sendall(_HEADER.pack(pid))
        _reap(status_pipes)


def _reap(status_pipes: dict[int, int]) -> None:
    while status_pipes:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        pipe = status_pipes.pop(pid, None)
        if pipe is not None:
            with contextlib.suppress(OSError):
                os.write(pipe, f"{os.waitstatus_to_exitcode(status)}\n".encode())
            os.close(pipe)


def _child(request: dict[str, Any]) -> int:
    """Become `flowpods <argv>` with the request's environment, working directory and log file."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    sys.argv = ["flowpods", *request["argv"]]
    try:
        return int(_resolve(ENTRY)(request["argv"]) or 0)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1


def end_process(code: int) -> NoReturn:
    """End as an interpreter ends (non-daemon threads joined, atexit handlers run, streams flushed), without
    tearing down the modules one by one: that finalization is most of an exit (~0.1 s) and only frees memory.
    Each attempt's child ends so, the fork server, and `flowpods run` (`cli.main.entry`)."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


# --- the runner's side -----------------------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        code = (
            "import sys, json; sys.path[:] = json.loads(sys.argv[2]); "
            "from flowpods.local.warm import serve, end_process; end_process(serve(int(sys.argv[1])))"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(theirs.fileno()), json.dumps(sys.path)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.socket = ours
        self.lock = threading.Lock()

    def start(self, request: dict[str, Any], status_w: int) -> int:
        payload = json.dumps(request).encode()
        with self.lock:
            socket.send_fds(self.socket, [_HEADER.pack(len(payload))], [status_w])
            self.socket.sendall(payload)
            return int(_HEADER.unpack(_recv_exact(self.socket, _HEADER.size))[0])


_server: _Server | None = None
_server_lock = threading.Lock()


def _running_server() -> _Server:
    global _server
    with _server_lock:
        if _server is None or _server.process.poll() is not None:
            _server = _Server()
        return _server


def warm_up() -> None:
    """Start the fork server now (else on the first attempt): it imports the worker meanwhile."""
    _running_server()


class WorkerProcess:
    """One attempt's process, with the part of `subprocess.Popen`'s interface the runner uses."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_file: Path):
        self.returncode: int | None = None
        self.sentinel, status_w = os.pipe()
        try:
            request = {"argv": argv, "env": env, "cwd": str(cwd), "log": str(log_file)}
            self.pid = _running_server().start(request, status_w)
        except BaseException:
            os.close(self.sentinel)
            raise
        finally:
            os.close(status_w)

    def poll(self) -> int | None:
        """The exit code once it ended (negative: the signal that ended it), else None."""
        if self.returncode is None and select.select([self.sentinel], [], [], 0)[0]:
            text = os.read(self.sentinel, 64).decode().strip()
            os.close(self.sentinel)
            self.returncode = int(text) if text.lstrip("-").isdigit() else 255  # 255: the server died
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            select.select([self.sentinel], [], [], timeout)
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # once it ended, its pid may be someone else's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def wait_any(processes: list[WorkerProcess], timeout: float) -> None:
    """Until one of the processes ends, or `timeout` seconds."""
    waiting = [p.sentinel for p in processes if p.returncode is None]
    if waiting:
        select.select(waiting, [], [], timeout)
