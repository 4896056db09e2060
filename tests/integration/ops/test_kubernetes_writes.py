"""The manifests give every container a read-only root filesystem with two volumes, /tmp and
/data. This runs the embedded pod's two commands (the init container's `llmserver migrate`,
then `llmserver serve`) with the environment the rendered overlay gives them, under strace,
serves a few requests, stops the server with SIGTERM as the kubelet does, and checks that
every file the processes created, wrote, renamed or removed lies on one of those volumes.

The image's /app (its WORKDIR, its user's home, the code) stands for a read-only root here:
the checkout, the processes' working directory and HOME. /data is mapped to a directory
under this test's temporary folder; /tmp is /tmp.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from integration.ops.k8stools import Manifest, render, server, settings_of, usable_kubectl
from integration.ops.opstools import INSTALL_HINT, ROOT, free_port
from livesupport import TEST_SECRET, issue_keys

WRITING = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
PATH_CALLS = "openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir"
# With -y, file descriptors show their paths: openat(AT_FDCWD</cwd>, "a/b", O_WRONLY) = 3</cwd/a/b>
# and openat(5</some/dir>, "c", ...). With -ff every process has a file of its own, so no
# call is split into "unfinished" and "resumed" halves by another thread's.
CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\) += (?P<result>-?\d+)")
QUOTED = re.compile(r'(?:(?:AT_FDCWD|\d+)<(?P<dir>[^>]*)>, )?"(?P<path>(?:[^"\\]|\\.)*)"')


def written_paths(traces: Path, cwd: Path) -> set[Path]:
    """Every path a successful call in the traces created, opened for writing, renamed or
    removed (both ends of a rename)."""
    paths: set[Path] = set()
    lines = (line for f in traces.iterdir() for line in f.read_text(errors="replace").splitlines())
    for line in lines:
        call = CALL.match(line)
        if call is None or int(call["result"]) < 0:
            continue
        if call["name"] in ("openat", "open") and not WRITING.search(call["args"]):
            continue
        for found in QUOTED.finditer(call["args"]):
            base = Path(found["dir"]) if found["dir"] else cwd
            paths.add(base / found["path"])
    return paths


def traced(command: list[str], traces: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``command`` under strace, one trace file per process in the new folder ``traces``,
    its output in ``traces``.log (a file: a pipe nobody reads would fill and block it)."""
    traces.mkdir()
    options = ["-ff", "-qq", "-y", "-e", f"trace={PATH_CALLS}", "-o", str(traces / "trace")]
    with traces.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(
            ["strace", *options, *command], cwd=ROOT, env=env, stdout=log, stderr=log
        )


def tracee(strace: subprocess.Popen[bytes]) -> int:
    """The pid of the command strace runs: its child (strace itself passes no signal on)."""
    (pid,) = Path(f"/proc/{strace.pid}/task/{strace.pid}/children").read_text().split()
    return int(pid)


@pytest.fixture(scope="module")
def strace() -> str:
    found = shutil.which("strace")
    if found is None:
        pytest.skip(f"strace is not installed: {INSTALL_HINT}")
    probe = subprocess.run([found, "-o", os.devnull, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode(errors='replace')}")
    return found


def pod_environment(objects: list[Manifest], data: Path, tmp: Path) -> dict[str, str]:
    """The server container's environment from the rendered overlay, its paths mapped."""
    env = settings_of(objects, server(objects))
    env = {k: v.replace("/data/", f"{data}/") for k, v in env.items()}
    dockerfile = (ROOT / "ops/docker/Dockerfile").read_text()
    hf_home = re.search(r"HF_HOME=(\S+)", dockerfile)
    assert hf_home is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLMSERVER_", "HF_"))}
    return {
        **clean,
        **env,
        "LLMSERVER_SERVER_SECRET": TEST_SECRET,
        # The test machine's loopback, not every interface.
        "LLMSERVER_HOST": "127.0.0.1",
        "HF_HOME": hf_home[1].replace("/data/", f"{data}/"),
        "HF_HUB_OFFLINE": "1",
        "HOME": str(ROOT),
        "TMPDIR": str(tmp),
    }


@pytest.mark.torch
@pytest.mark.slow
def test_the_embedded_pod_writes_only_to_its_volumes(
    strace: str, demo_model_dir: Path, tmp_path: Path
) -> None:
    objects = render(usable_kubectl(), "embedded")
    data, tmp = tmp_path / "data", Path("/tmp")
    data.mkdir()
    port = free_port()
    env = pod_environment(objects, data, tmp)
    env.update(LLMSERVER_PORT=str(port), LLMSERVER_DEMO_MODEL_DIR=str(demo_model_dir))
    url = env["LLMSERVER_DATABASE_URL"]
    assert url == f"sqlite+aiosqlite:///{data}/llmserver.db"
    llmserver = [sys.executable, "-m", "llmserver.cli"]

    migrate = traced([*llmserver, "migrate"], tmp_path / "migrate", env)
    assert migrate.wait(timeout=120) == 0, (tmp_path / "migrate.log").read_text()
    keys = asyncio.run(issue_keys(url, TEST_SECRET))

    serve = traced([*llmserver, "serve"], tmp_path / "serve", env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server never became ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {keys.user}"}
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            streamed = client.post(
                "/v1/chat/completions", json={**body, "max_tokens": 4, "stream": True}
            )
            assert streamed.status_code == 200
            for _ in range(2):  # temperature 0: a miss written to the cache, then a hit
                cached = client.post(
                    "/v1/chat/completions", json={**body, "max_tokens": 4, "temperature": 0}
                )
                assert cached.status_code == 200
            assert cached.headers["x-cache"] == "HIT"
            assert client.get("/metrics").status_code == 200
        os.kill(tracee(serve), signal.SIGTERM)
        serve.wait(timeout=120)
    finally:
        if serve.poll() is None:  # strace killed alone would leave its tracee running
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(tracee(serve), signal.SIGKILL)
            serve.kill()
            serve.wait()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()

    volumes = (data, tmp)
    # Python writes bytecode next to sources it compiled; the image compiles it at build
    # (UV_COMPILE_BYTECODE) and Python skips the write on a read-only filesystem.
    # /dev (null, shm) and /proc are the container runtime's, writable in any pod.
    outside = {
        path
        for name in ("migrate", "serve")
        for path in written_paths(tmp_path / name, ROOT)
        if not any(path.is_relative_to(v) for v in volumes)
        and "__pycache__" not in path.parts
        and path.parts[1] not in ("dev", "proc")
    }
    assert outside == set()
    written = written_paths(tmp_path / "serve", ROOT)
    assert data / "llmserver.db" in written or data / "llmserver.db-wal" in written
