"""Container images for the real test node, built without any container engine or registry.

Three images, each a docker-save archive that `ctr -n k8s.io images import` loads:

* pause: the pod sandbox process (tests/testenv/pause/main.go, built by build.sh);
* base: Debian bookworm minbase with python3, from `debootstrap` and the mirror apt already uses;
* worker: what worker-image/Dockerfile describes, made from the base: a venv at /opt/flowpods with this
  package installed from wheels, the Dockerfile's USER, ENV, WORKDIR, ENTRYPOINT and CMD. The builder reads
  those from the Dockerfile itself, and installs what its COPY lines name, so the two cannot drift apart.

Archives are cached outside the repo by a hash of what goes into them, so a warm run builds nothing.
`python -m tests.testenv images` (= `make images`) builds them and prints where they are.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DOCKERFILE = REPO / "worker-image" / "Dockerfile"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
PAUSE_IMAGE = "flowpods.local/pause:3"
BASE_IMAGE = "flowpods.local/debian-python:bookworm"
WORKER_IMAGE = "docker.io/library/flowpods:dev"
KUBECTL_IMAGE = "flowpods.local/kubectl:dev"
JAEGER_IMAGE = "flowpods.local/jaeger:dev"
SHELL_ONLY_IMAGE = "flowpods.local/shell-only:bookworm"
PYTHON_OTEL_IMAGE = "flowpods.local/python-otel:bookworm"
PYTHON_OTEL_PACKAGES = ("opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp==1.45.2")
VENV = "/opt/flowpods"


@dataclass
class ImageSpec:
    """What worker-image/Dockerfile says the image is (the part a rootfs builder needs)."""

    copy: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def parse_dockerfile(text: str) -> ImageSpec:
    """The COPY sources, ENV, USER, last WORKDIR, ENTRYPOINT and CMD of a simple Dockerfile."""
    spec = ImageSpec()
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    for line in logical.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "COPY":
            spec.copy += [s.rstrip("/") for s in shlex.split(rest)[:-1]]
        elif word == "ENV":
            spec.env.update(part.split("=", 1) for part in shlex.split(rest))  # type: ignore[arg-type]
        elif word == "USER":
            spec.user = rest
        elif word == "WORKDIR":
            spec.workdir = rest
        elif word == "ENTRYPOINT":
            spec.entrypoint = json.loads(rest)
        elif word == "CMD":
            spec.cmd = json.loads(rest)
    return spec


def cache_dir() -> Path:
    root = os.environ.get("FLOWPODS_TESTENV_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "flowpods", "testenv"
    )
    return Path(root) / "node-images"


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def _identity(binary: Path) -> bytes:
    """A built binary's cache identity: path, size and mtime (build.sh replaces, never edits, a binary;
    hashing 100 MB on every start would cost seconds)."""
    st = binary.stat()
    return f"{binary}:{st.st_size}:{st.st_mtime_ns}".encode()


def _tree_bytes(paths: list[Path]) -> bytes:
    """Names and contents of the files under `paths` (no caches), for a cache key."""
    out = []
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc" or ".egg-info" in str(f):
                continue
            out.append(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return b"\0\0".join(out)


def apt_mirror() -> str:
    """The Debian mirror apt uses here (deb822 sources or sources.list)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb":
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return "http://deb.debian.org/debian"


def layer_tar(rootfs: Path, out: Path) -> Path:
    """One layer: the tree under `rootfs` (numeric owners; no /dev, /proc, /sys contents)."""
    if not out.exists():
        partial = out.with_suffix(f".{os.getpid()}.partial")  # two test processes may build the same one at once
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "--exclude=./dev/*", "--exclude=./proc/*",
             "--exclude=./sys/*", "--exclude=./.complete", "-cf", str(partial), "."],
            check=True,
        )  # fmt: skip
        partial.rename(out)
    return out


def write_archive(layers: list[Path], out: Path, tag: str, config: dict[str, object]) -> None:
    """A docker-save archive of these layer tars, bottom first (`ctr images import` reads it)."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        diff_ids = []
        for layer in layers:
            diff_id = hashlib.sha256(layer.read_bytes()).hexdigest()
            (tmp / diff_id).mkdir(exist_ok=True)
            os.link(layer, tmp / diff_id / "layer.tar")
            diff_ids.append(diff_id)
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
            "history": [{"created_by": "tests/testenv/images.py"} for _ in diff_ids],
        }
        raw = json.dumps(image_config, sort_keys=True).encode()
        config_name = hashlib.sha256(raw).hexdigest() + ".json"
        (tmp / config_name).write_bytes(raw)
        manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{d}/layer.tar" for d in diff_ids]}]
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        partial = out.with_suffix(f".{os.getpid()}.partial")  # two test processes may build the same one at once
        subprocess.run(
            ["tar", "-C", str(tmp), "-chf", str(partial), "manifest.json", config_name, *dict.fromkeys(diff_ids)],
            check=True,
        )
        partial.rename(out)


def _single(rootfs: Path, out: Path, tag: str, config: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        write_archive([layer_tar(rootfs, Path(tmp) / "layer.tar")], out, tag, config)


def _log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


def _chroot(rootfs: Path, *argv: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    subprocess.run(["chroot", str(rootfs), *argv], check=True, env=env, stdout=subprocess.DEVNULL)


def build_pause(node_bin: Path) -> Path:
    binary = node_bin / "pause"
    out = cache_dir() / f"pause-{_hash(_identity(binary))}.tar"
    if not out.exists():
        with tempfile.TemporaryDirectory() as rootfs:
            shutil.copy2(binary, Path(rootfs) / "pause")
            _single(Path(rootfs), out, PAUSE_IMAGE, {"Entrypoint": ["/pause"]})
        _log(f"pause image: {out}")
    return out


def base_rootfs() -> tuple[Path, str]:
    """debootstrap --variant=minbase (cached: 60-100 s on 2 cores)."""
    mirror = apt_mirror()
    key = _hash(SUITE.encode(), " ".join(BASE_PACKAGES).encode(), mirror.encode())
    rootfs = cache_dir() / f"base-{key}"
    if not (rootfs / ".complete").exists():
        if not shutil.which("debootstrap"):
            raise RuntimeError("debootstrap not found: apt-get install debootstrap (tests/testenv/packages.sh does)")
        shutil.rmtree(rootfs, ignore_errors=True)
        t0 = time.monotonic()
        log = cache_dir() / f"base-{key}.log"
        with log.open("wb") as f:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs),
                 mirror],
                stdout=f, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap failed, see {log}:\n{log.read_text()[-2000:]}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        (rootfs / ".complete").touch()
        _log(f"base rootfs (debootstrap {SUITE} minbase + python3) in {time.monotonic() - t0:.0f}s")
    return rootfs, key


BASE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def build_base() -> Path:
    rootfs, key = base_rootfs()
    out = cache_dir() / f"base-{key}.tar"
    if not out.exists():
        layer = layer_tar(rootfs, cache_dir() / f"base-{key}.layer.tar")
        write_archive([layer], out, BASE_IMAGE, {"Cmd": ["python3"], "Env": BASE_ENV})
        _log(f"base image: {out}")
    return out


def build_with_binary(name: str, tag: str, binary: Path, target: str, base: bool, config: dict[str, object]) -> Path:
    """An image of one static binary at `target`: on top of the base image's layer (a shell and coreutils
    with it: the chart's `helm test` pod runs `sh -c` around kubectl) or alone (e.g. Jaeger)."""
    base_root, base_key = base_rootfs()
    key = _hash(_identity(binary), tag.encode(), target.encode(), (base_key if base else "").encode())
    out = cache_dir() / f"{name}-{key}.tar"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp_dir:
        tree = Path(tmp_dir) / "tree"
        dest = tree / target.lstrip("/")
        dest.parent.mkdir(parents=True)
        shutil.copy2(binary, dest)
        for empty in ("tmp", "etc"):
            (tree / empty).mkdir(exist_ok=True, mode=0o1777 if empty == "tmp" else 0o755)
        layers = [layer_tar(base_root, cache_dir() / f"base-{base_key}.layer.tar")] if base else []
        layers.append(layer_tar(tree, Path(tmp_dir) / "layer.tar"))
        write_archive(layers, out, tag, config)
    _log(f"{name} image: {out}")
    return out


def worker_key(base_key: str, spec: ImageSpec) -> str:
    sources = [REPO / s for s in spec.copy]
    recipe = "".join(inspect.getsource(f) for f in (parse_dockerfile, build_worker, layer_tar, write_archive))
    return _hash(base_key.encode(), DOCKERFILE.read_bytes(), _tree_bytes(sources), recipe.encode())


def build_worker() -> Path:
    """The worker/operator image: base + venv with this package from wheels + the Dockerfile's user and config."""
    spec = parse_dockerfile(DOCKERFILE.read_text())
    rootfs_base, base_key = base_rootfs()
    out = cache_dir() / f"worker-{worker_key(base_key, spec)}.tar"
    if out.exists():
        return out
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp_dir:
        tmp = Path(tmp_dir)
        context = tmp / "context"  # only what the Dockerfile COPYs
        for src in spec.copy:
            target = context / src
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(REPO / src, target)
        rootfs = tmp / "rootfs"
        subprocess.run(["cp", "-a", str(rootfs_base), str(rootfs)], check=True)
        (rootfs / ".complete").unlink()
        wheels = rootfs / "wheels"
        pip_env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(context)],
            check=True, env=pip_env,
        )  # fmt: skip
        _chroot(rootfs, "python3", "-m", "venv", VENV)
        _chroot(rootfs, f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--no-cache-dir",
                "--find-links", "/wheels", "flowpods")  # fmt: skip
        shutil.rmtree(wheels)
        uid, _, gid = spec.user.partition(":")
        _chroot(rootfs, "groupadd", "--gid", gid or uid, "flowpods")
        _chroot(rootfs, "useradd", "--uid", uid, "--gid", gid or uid, "--no-create-home", "--home-dir", "/tmp",
                "--shell", "/usr/sbin/nologin", "flowpods")  # fmt: skip
        env = {"PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **spec.env}
        config = {
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "User": spec.user,
            "WorkingDir": spec.workdir,
        }
        _single(rootfs, out, WORKER_IMAGE, config)
    _log(f"worker image in {time.monotonic() - t0:.0f}s: {out}")
    return out


def build_shell_only() -> Path:
    """Script tasks' smallest image: Debian's dash as /bin/sh with the C library it links, and nothing else
    (no coreutils, no Python, no flowpods)."""
    base_root, base_key = base_rootfs()
    key = _hash(base_key.encode(), SHELL_ONLY_IMAGE.encode(), b"dash+libc")
    out = cache_dir() / f"shell-only-{key}.tar"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp_dir:
        tree = Path(tmp_dir) / "tree"
        for name in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "etc"):
            (tree / name).mkdir(parents=True)
        (tree / "tmp").mkdir(mode=0o1777)
        (tree / "tmp").chmod(0o1777)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            (tree / link).symlink_to(target)
        for path in ("usr/bin/dash", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib64/ld-linux-x86-64.so.2"):
            shutil.copy2(base_root / path, tree / path)  # through symlinks: the files themselves
        (tree / "usr/bin/sh").symlink_to("dash")
        (tree / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
        write_archive([layer_tar(tree, Path(tmp_dir) / "layer.tar")], out, SHELL_ONLY_IMAGE,
                      {"Cmd": ["/bin/sh"], "Env": BASE_ENV})  # fmt: skip
    _log(f"shell-only image: {out}")
    return out


def build_python_otel() -> Path:
    """An image with Python and the OpenTelemetry SDK but no flowpods: the base image's layer and a layer of
    the SDK's wheels installed where Debian's python3 looks (/usr/local/lib/python3.11/dist-packages)."""
    base_root, base_key = base_rootfs()
    key = _hash(base_key.encode(), PYTHON_OTEL_IMAGE.encode(), " ".join(PYTHON_OTEL_PACKAGES).encode())
    out = cache_dir() / f"python-otel-{key}.tar"
    if out.exists():
        return out
    (stdlib,) = (base_root / "usr/lib").glob("python3.[0-9]*/os.py")  # the base image's one Python
    version = stdlib.parent.name.removeprefix("python")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp_dir:
        tree = Path(tmp_dir) / "tree"
        target = tree / f"usr/local/lib/python{version}/dist-packages"
        pip_env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--only-binary=:all:",
             "--python-version", version, "--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64",
             "--implementation", "cp", "--target", str(target), *PYTHON_OTEL_PACKAGES],
            check=True, env=pip_env,
        )  # fmt: skip
        layers = [
            layer_tar(base_root, cache_dir() / f"base-{base_key}.layer.tar"),
            layer_tar(tree, Path(tmp_dir) / "l"),
        ]
        write_archive(layers, out, PYTHON_OTEL_IMAGE, {"Cmd": ["python3"], "Env": BASE_ENV})
    _log(f"python-otel image: {out}")
    return out


def build_all(node_bin: Path, bin_dir: Path) -> list[Path]:
    """Every archive the real node imports (built when missing): pause, base, worker, and for the chart
    its `helm test` image (base + kubectl) and its in-cluster Jaeger (the jaeger binary)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    archives = [
        build_pause(node_bin),
        build_base(),
        build_worker(),
        build_with_binary(
            "kubectl",
            KUBECTL_IMAGE,
            bin_dir / "kubectl",
            "/usr/local/bin/kubectl",
            True,
            {"Entrypoint": ["kubectl"], "Env": BASE_ENV},
        ),
        build_with_binary(
            "jaeger", JAEGER_IMAGE, bin_dir / "jaeger", "/jaeger", False, {"Entrypoint": ["/jaeger"], "Env": BASE_ENV}
        ),
        build_shell_only(),  # script tasks in images without flowpods (tests/e2e/test_scripts.py)
        build_python_otel(),
    ]
    for kind in ("pause", "worker", "kubectl", "jaeger"):  # earlier versions: no longer wanted
        for old in cache_dir().glob(f"{kind}-*.tar"):
            if old not in archives:
                old.unlink()
    return archives
