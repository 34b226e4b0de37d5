"""The docker executor against the docker CLI on the same daemon: overhead, log latency, cancel, parallel throughput.

    python bench/bench_docker.py [--repeat 5] [--only calls,overhead,logs,cancel,parallel]
                                 [--before OTHER_SOURCE_TREE]

Needs a Docker daemon (``.ci/docker-up`` starts one as root) and /bin/busybox (busybox-static);
the image is built locally from busybox, so no registry is used. Containers run with
``--network none``. Prints figures, asserts nothing.

* overhead: ``docker run --rm IMAGE true`` (whole CLI process) against a task running ``true``
  (start to finish as the run store records it): the first of its process (which also loads the
  executor's modules and asks the daemon its API version) and a later one; the whole
  ``orchestrate run`` process; and, for scale, what importing the Docker SDK costs (the run task
  no longer does on a local socket; the code before did, in its first task).
* logs: a container prints its uptime (``/proc/uptime``, 10 ms resolution, the host's clock) every
  100 ms; delay until the line is in the run store, and until ``orchestrate logs --follow`` prints it.
* cancel: ``orchestrate cancel`` of a run whose container loops without handling SIGTERM, with the
  default init process and without it (default stop grace 5 s): time until the container is gone.
* parallel: 20 containers running ``true``, 20 sequential ``docker run`` calls against one
  ``orchestrate run --max-parallel 4`` of 20 independent steps.
* calls: Docker API requests (deterministic, unlike times on a shared machine) of ``docker run --rm``
  and of ``orchestrate run`` with 1 and with 10 containers, counted by a unix-socket proxy in front
  of the daemon; also the writes of the executor's state records.

``--before TREE`` also runs ``orchestrate`` from another source tree (say ``git archive main``
unpacked in /tmp) with ``PYTHONPATH=TREE``, interleaved with this one: before and after in one run.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

IMAGE = "orchestrator-bench/busybox:1"
APPLETS = ("sh", "echo", "cat", "sleep", "true", "read")


def build_image(client: Any) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
        tar.add("/bin/busybox", "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    repository, tag = IMAGE.split(":")
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)


def routine(folder: Path, name: str, steps: list[dict[str, Any]]) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"routine_name": name, "executors": steps}))
    return path


def step(name: str, script: str, parallel: bool = False, **args: Any) -> dict[str, Any]:
    entry = {"name": name, "executor": "docker", "params": {"image": IMAGE, "pull": "never"},
             "tasks": [{"task": "run", "args": {"command": ["sh", "-c", script], **args}}]}
    if parallel:
        entry["depends_on"] = []
    return entry


def tree_env(tree: str | None) -> dict[str, str]:
    """The environment that runs ``orchestrate`` from another source tree (``--before``), or ours.

    Run with ``cwd=tree`` as well: ``python -m`` and ``-c`` put the working folder first on the path."""
    return {**os.environ, "PYTHONPATH": tree} if tree else dict(os.environ)


def orchestrate(*args: str, tree: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          env=tree_env(tree), cwd=tree, **kwargs)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def store() -> Any:
    from orchestrator.runs.store import open_store

    return open_store()


def bench_overhead(folder: Path, repeat: int, before: str | None) -> None:
    """Interleaved, so both sides see the same load on a shared machine.

    Each ``orchestrate run`` runs two steps one after the other: the first task of a process also
    pays the once-per-process costs (as the CLI's own start is once per call); the second is what
    every later container costs.
    """
    steps = [step("first", "true"), {**step("later", "true"), "depends_on": ["first"]}]
    path = routine(folder, "overhead", steps)
    trees = {"": None, **({"before ": before} if before else {})}
    cli, sdk = [], []
    first: dict[str, list[float]] = {label: [] for label in trees}
    later: dict[str, list[float]] = {label: [] for label in trees}
    whole: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(repeat):
        sdk.append(timed(lambda: subprocess.run([sys.executable, "-c", "import docker"], check=True))
                   - timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)))
        cli.append(timed(lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"],
                                                check=True)))
        for label, tree in trees.items():
            run_id = str(uuid.uuid4())
            whole[label].append(timed(lambda: orchestrate("run", str(path), "--run-id", run_id, "--quiet",
                                                          tree=tree, check=True)))
            records = {record.step: record for record in store().tasks(run_id)}
            first[label].append(records["first"].ended - records["first"].started)
            later[label].append(records["later"].ended - records["later"].started)
    base = statistics.median(cli)
    print(f"overhead (median of {repeat}): docker run --rm true {base:.3f}s; "
          f"importing the Docker SDK {statistics.median(sdk):.3f}s")
    for label in trees:
        ratios = sorted(t / c for t, c in zip(later[label], cli))
        print(f"  {label}task start-to-finish: first of the process {statistics.median(first[label]):.3f}s "
              f"({statistics.median(first[label]) / base:.2f}x), later {statistics.median(later[label]):.3f}s "
              f"({statistics.median(later[label]) / base:.2f}x; per repetition "
              f"{', '.join(f'{r:.2f}x' for r in ratios)}); "
              f"whole orchestrate run (2 containers) {statistics.median(whole[label]):.3f}s")


def bench_logs(folder: Path, lines: int = 30) -> None:
    script = f"i=0; while [ $i -lt {lines} ]; do read up idle < /proc/uptime; echo tick $up; i=$((i+1)); sleep 0.1; done"
    path = routine(folder, "logs", [step("ticker", script)])
    run_id = str(uuid.uuid4())
    offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    follower_seen: dict[str, float] = {}
    child = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--run-id", run_id, "--quiet"])
    while store().get_run(run_id) is None:
        time.sleep(0.02)
    follow = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "logs", "--follow", run_id],
                              stdout=subprocess.PIPE, text=True)

    def read() -> None:
        for line in follow.stdout or []:
            if "tick " in line:
                follower_seen[line.rsplit("tick ", 1)[1].strip()] = time.time()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    child.wait()
    follow.wait(30)
    reader.join(5)
    in_store = []
    via_follow = []
    for record in store().logs(run_id):
        if record.message.startswith("tick "):
            up = record.message.split()[1]
            printed = float(up) + offset
            in_store.append(record.ts - printed)
            if up in follower_seen:
                via_follow.append(follower_seen[up] - printed)
    print(f"log latency over {len(in_store)} lines (printed every 100 ms; uptime resolution 10 ms): "
          f"in the run store median {statistics.median(in_store) * 1000:.0f} ms, max {max(in_store) * 1000:.0f} ms; "
          f"printed by logs --follow median {statistics.median(via_follow) * 1000:.0f} ms, "
          f"max {max(via_follow) * 1000:.0f} ms")


def bench_cancel(folder: Path, client: Any) -> None:
    """``orchestrate cancel`` includes starting a Python process; SIGTERM to the run is the executor's part."""
    for init, how in ((True, "cancel"), (True, "sigterm"), (False, "cancel")):
        name = f"cancel_{'init' if init else 'pid1'}_{how}"
        path = routine(folder, name, [step("loop", "echo started; while true; do sleep 0.1; done", init=init)])
        run_id = str(uuid.uuid4())
        child = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--run-id", run_id,
                                  "--quiet"], stderr=subprocess.DEVNULL)
        while not any(r.message == "started" for r in store().logs(run_id)):
            time.sleep(0.02)
        (container,) = client.api.containers(filters={"label": f"orchestrator.run={run_id}"})
        start = time.perf_counter()
        if how == "cancel":
            canceller = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "cancel", run_id],
                                         stdout=subprocess.DEVNULL)
        else:
            child.send_signal(signal.SIGTERM)
        while client.api.containers(all=True, filters={"id": container["Id"]}):
            time.sleep(0.005)
        gone = time.perf_counter() - start
        if how == "cancel":
            canceller.wait()
        command = time.perf_counter() - start
        child.wait()
        status = store().get_run(run_id).status
        sender = "orchestrate cancel" if how == "cancel" else "SIGTERM to the run process"
        print(f"cancel ({'init process' if init else 'sh as PID 1'}, grace 5 s, {sender}): container gone after "
              f"{gone:.3f}s; {'orchestrate cancel returned' if how == 'cancel' else 'done'} after {command:.3f}s; "
              f"run {status}")


def bench_parallel(folder: Path, repeat: int, before: str | None, count: int = 20) -> None:
    """Interleaved repetitions, medians: both sides see the same load on a shared machine."""
    path = routine(folder, "parallel", [step(f"c{i}", "true", parallel=True) for i in range(count)])
    trees = {"": None, **({"before ": before} if before else {})}
    sequential: list[float] = []
    ours: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(repeat):
        sequential.append(timed(lambda: [subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"],
                                                        check=True) for _ in range(count)]))
        for label, tree in trees.items():
            ours[label].append(timed(lambda: orchestrate("run", str(path), "--max-parallel", "4", "--quiet",
                                                         tree=tree, check=True)))
    base = statistics.median(sequential)
    print(f"{count} containers (median of {repeat}): {count} sequential docker run {base:.2f}s")
    for label in trees:
        ratios = sorted(s / o for s, o in zip(sequential, ours[label]))
        print(f"  {label}orchestrate --max-parallel 4 {statistics.median(ours[label]):.2f}s (whole process): "
              f"{base / statistics.median(ours[label]):.2f}x the throughput "
              f"(per repetition {', '.join(f'{r:.2f}x' for r in ratios)})")


class CountingProxy:
    """A unix socket in front of the daemon's that records the request line of every API call."""

    REQUEST = re.compile(rb"(GET|POST|HEAD|PUT|DELETE) (/[^ ]*) HTTP/1\.[01]\r\n")

    def __init__(self, folder: Path, daemon: str = "/var/run/docker.sock") -> None:
        self.path, self.daemon = str(folder / "proxy.sock"), daemon
        self.calls: list[str] = []
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(self.path)
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self._server.accept()
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.daemon)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        tail = b""
        try:
            while data := source.recv(65536):
                if requests:
                    tail += data
                    self.calls.extend(self._name(*m.groups()) for m in self.REQUEST.finditer(tail))
                    tail = tail[-64:] if not self.REQUEST.search(tail[-64:]) else b""
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _name(method: bytes, path: bytes) -> str:
        text = re.sub(r"^/v[0-9.]+", "", path.decode().split("?")[0])
        text = re.sub(r"^/containers/(?!create$|json$)[^/]+", "/containers/{id}", text)
        text = re.sub(r"^/images/.+/json$", "/images/{name}/json", text)
        return f"{method.decode()} {text}"

    def take(self) -> collections.Counter[str]:
        time.sleep(0.2)  # the last request lines may still be in flight
        counted, self.calls = collections.Counter(self.calls), []
        return counted


COUNT_SAVES = """
import atexit, sys
from executors.aws import record as remote
saves = [0]
original = remote.RemoteRecord.save
def save(self, **fields):
    saves[0] += 1
    original(self, **fields)
remote.RemoteRecord.save = save
atexit.register(lambda: print("record-saves", saves[0], file=sys.stderr))
from orchestrator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def bench_calls(folder: Path, before: str | None) -> None:
    proxy = CountingProxy(folder)
    socket_env = {"DOCKER_HOST": f"unix://{proxy.path}"}
    subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "true"], env={**os.environ, **socket_env},
                   check=True)
    cli = proxy.take()
    print(f"API calls of docker run --rm true: {sum(cli.values())} {dict(sorted(cli.items()))}")
    for label, tree in {"": None, **({"before: ": before} if before else {})}.items():
        bench_calls_of(folder, proxy, {**tree_env(tree), **socket_env}, tree, label)


def bench_calls_of(folder: Path, proxy: CountingProxy, env: dict[str, str], tree: str | None, label: str) -> None:
    for count in (1, 10):
        path = routine(folder, f"calls{count}", [step(f"c{i}", "true", parallel=True) for i in range(count)])
        proc = subprocess.run([sys.executable, "-c", COUNT_SAVES, "run", str(path), "--quiet"], env=env, cwd=tree,
                              capture_output=True, text=True, check=True)
        saves = proc.stderr.split("record-saves")[-1].split()[0]
        ours = proxy.take()
        print(f"{label}API calls of orchestrate run, {count} container(s): {sum(ours.values())} "
              f"{dict(sorted(ours.items()))}; state-record writes {saves}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="calls,overhead,logs,cancel,parallel")
    parser.add_argument("--before", metavar="SOURCE_TREE",
                        help="also run orchestrate from this source tree (PYTHONPATH), interleaved")
    args = parser.parse_args()
    import docker

    client = docker.from_env()
    build_image(client)
    print(f"daemon {client.version()['Version']}, storage {client.info()['Driver']}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ORCHESTRATOR_HOME", str(Path(tmp) / "home"))
        os.environ["NO_COLOR"] = "1"
        folder = Path(tmp)
        wanted = args.only.split(",")
        if "calls" in wanted:
            bench_calls(folder, args.before)
        if "overhead" in wanted:
            bench_overhead(folder, args.repeat, args.before)
        if "logs" in wanted:
            bench_logs(folder)
        if "cancel" in wanted:
            bench_cancel(folder, client)
        if "parallel" in wanted:
            bench_parallel(folder, max(1, args.repeat // 2), args.before)


if __name__ == "__main__":
    main()
