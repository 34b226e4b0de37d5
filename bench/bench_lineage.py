"""What lineage events and step outputs cost per task: a tracked run of N no-op tasks (one per
step, in declared order) with lineage off, to a JSON-lines file and to a loopback HTTP endpoint,
and with each task reading the previous one's output (``${steps.PREV.nothing.outputs.n}``).

    python bench/bench_lineage.py [--tasks 200] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PLUGIN = '''
from orchestrator import Executor, hookimpl, task

class Noop(Executor):
    name = "noop"

    @task
    def nothing(self, n: int = 0):
        return {"n": n + 1}

@hookimpl
def register_executors():
    return [Noop]
'''


class Sink(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Sink.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def routine(tasks: int, chained: bool, lineage: Any) -> dict[str, Any]:
    steps = []
    for i in range(tasks):
        args = {"n": f"${{steps.s{i - 1}.nothing.outputs.n}}"} if chained and i else {}
        steps.append({"name": f"s{i}", "executor": "noop",
                      "tasks": [{"task": "nothing", "args": args}]})
    doc: dict[str, Any] = {"routine_name": "bench_lineage", "executors": steps}
    if lineage is not None:
        doc["lineage"] = lineage
    return doc


def timed(doc: dict[str, Any], registry: Any, repeat: int) -> float:
    from orchestrator import Orchestrator

    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        result = Orchestrator(registry=registry).run(doc)
        times.append(time.perf_counter() - begin)
        assert result.status == "succeeded", result.status
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "bench_noop_plugin.py").write_text(PLUGIN)
        sys.path.insert(0, str(root))
        os.environ["ORCHESTRATOR_HOME"] = str(root / "home")
        import bench_noop_plugin  # type: ignore[import-not-found]

        from orchestrator.registry import Registry

        registry = Registry()
        registry.register(bench_noop_plugin, name="bench_noop")
        server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cases = {"lineage off": (False, False), "lineage to a file": ({"file": str(
            root / "events.jsonl")}, False), "lineage to HTTP": ({"url": url}, False),
            "outputs between steps (lineage off)": (False, True)}
        timed(routine(args.tasks, False, False), registry, 1)  # warm-up: imports, plugin index
        base = None
        for label, (lineage, chained) in cases.items():
            seconds = timed(routine(args.tasks, chained, lineage), registry, args.repeat)
            per_task = seconds / args.tasks * 1000
            base = per_task if base is None else base
            print(f"{label:38} {seconds:7.3f} s  {per_task:6.2f} ms/task  "
                  f"(+{per_task - base:5.2f} ms/task)")
        server.shutdown()
        print(f"events received over HTTP: {Sink.count}")


if __name__ == "__main__":
    main()
