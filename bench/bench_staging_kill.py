"""Kill -9 staging runs at chosen moments, rerun, and count what was lost, doubled or corrupted.

Each trial starts a staging run (transfer + post_staging, its own run id) in a child process and
SIGKILLs it when a trigger fires: N files in the dump, N in the archive, N landing files gone, or
a delay. At that moment nothing may be lost: every landed file is in the landing folder (under its
name, or claimed under a private name that a journal records) or intact in the archive, and every
visible dump file is complete and correct. The next trial starts on what the killed one left.
After the trials one last run must finish the job: every landed file exactly once in the dump
(transformed, or byte for byte), in the archive when archiving, no longer in landing; and no
temporary or claimed file, journal or incomplete multipart upload left behind.

The tests run a few trials (tests/test_staging_crash.py); this script runs many and reports.
Usage: python bench/bench_staging_kill.py [--trials 20] [--files 2000] [--places local,s3]
       [--modes archive,delete] [--transform] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from executors.staging import journal as _journal  # noqa: E402
from executors.staging.locations import is_private  # noqa: E402

TRANSFORM = f"{REPO}/routines/test_routine/transforms.py:rename_columns"
MAPPER = {"column1": "name", "column2": "age", "column3": "job"}
HEADER, RENAMED_HEADER = b"column1,column2,column3\n", b"name,age,job\n"

CHILD = """
import json, pathlib, sys
from orchestrator.executor import Context
from executors.staging.executor import StagingExecutor
params, home, run_id = json.loads(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
ex = StagingExecutor(**params)
ctx = lambda task: Context(run_id=run_id, run_date="2026-11-22", routine_name="kill", step="stage",
                           task=task, home=home)
print("go", flush=True)
ex.transfer(ctx("transfer"))
ex.post_staging(ctx("post_staging"))
ex.close()
print("done", flush=True)
"""


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def landed_files(count: int, big: int = 0) -> dict[str, bytes]:
    """``count`` small CSVs in 7 folders, and one of ``big`` bytes when asked (multipart)."""
    files = {
        f"batch{i % 7}/f{i:05d}.csv": HEADER + f"name{i},{i},job{i}\n".encode() * (1 + i % 5)
        for i in range(count)
    }
    if big:
        line = b"Carol,29,teacher,with a longer line of text to pad it out\n"
        files["big.csv"] = HEADER + line * (big // len(line))
    return files


@dataclasses.dataclass
class Problems:
    """What a check found; all zero means nothing was lost, doubled or corrupted."""

    lost: int = 0
    corrupted: int = 0
    doubled: int = 0
    stray: int = 0
    first: str = ""

    def add(self, kind: str, what: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.first = self.first or f"{kind}: {what}"

    @property
    def ok(self) -> bool:
        return not (self.lost or self.corrupted or self.doubled or self.stray)


class Scene:
    """One configuration: where the landing, dump and archive are, and how to look at them."""

    def __init__(
        self,
        place: str,
        mode: str,
        transform: bool,
        work: Path,
        files: dict[str, bytes],
        s3: Any = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.place, self.mode, self.transform, self.work, self.files = (
            place,
            mode,
            transform,
            work,
            files,
        )
        self.s3, self.env = s3, {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
        self.home = work / "home"
        self.sums = {rel: md5(data) for rel, data in files.items()}
        self.wanted: dict[str, str] = {}
        if place == "s3":
            for bucket in ("land", "lake"):
                s3.create_bucket(Bucket=bucket)
        self.land()

    # -- where things are
    def location(self, what: str) -> str:
        if self.place == "s3":
            return {
                "landing": "s3://land/in/",
                "archive": "s3://land/done/",
                "dump": "s3://lake/raw/",
            }[what]
        return str(self.work / what)

    def params(self) -> dict[str, Any]:
        params = {
            "parent_directory": self.location("landing"),
            "dump_directory": self.location("dump"),
            "archive_or_delete": self.mode,
        }
        if self.mode == "archive":
            params["archive_directory"] = self.location("archive")
        if self.transform:
            params.update(transform=TRANSFORM, transform_args={"mapper": MAPPER})
        return params

    def expected(self, rel: str) -> str:
        """MD5 of what the dump must hold for ``rel``."""
        if rel not in self.wanted:
            data = self.files[rel]
            self.wanted[rel] = md5(RENAMED_HEADER + data[len(HEADER) :] if self.transform else data)
        return self.wanted[rel]

    def landed(self, rel: str) -> str:
        return self.sums[rel]

    # -- reading a place: relative name → bytes
    def land(self) -> None:
        if self.place == "s3":
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda rel: self.s3.put_object(
                            Bucket="land", Key=f"in/{rel}", Body=self.files[rel]
                        ),
                        self.files,
                    )
                )
            return
        for rel, data in self.files.items():
            (self.work / "landing" / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.work / "landing" / rel).write_bytes(data)

    def read(self, what: str) -> dict[str, str]:
        """Relative name → MD5 of the content (from a plain S3 ETag without reading the object)."""
        if self.place == "s3":
            bucket, _, prefix = self.location(what)[len("s3://") :].partition("/")
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return {
                o["Key"][len(prefix) :]: self._md5_of(bucket, o)
                for p in pages
                for o in p.get("Contents", [])
            }
        folder = self.work / what
        return (
            {
                p.relative_to(folder).as_posix(): md5(p.read_bytes())
                for p in folder.rglob("*")
                if p.is_file()
            }
            if folder.exists()
            else {}
        )

    def _md5_of(self, bucket: str, listed: dict[str, Any]) -> str:
        etag = listed["ETag"].strip('"')
        if "-" not in etag:
            return etag
        return md5(self.s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read())

    def count(self, what: str) -> int:
        if self.place == "s3":
            bucket, _, prefix = self.location(what)[len("s3://") :].partition("/")
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sum(p.get("KeyCount", 0) for p in pages)
        folder = self.work / what
        return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0

    def claimed(self) -> dict[str, str]:
        """Claimed landing files that an unfinished journal records: private path → landing path."""
        found = {}
        for path in self.home.rglob("journal*.jsonl"):
            for leftover in _journal.read(path)[1]:
                if leftover.path is not None:
                    found[leftover.target] = leftover.path
        return found

    def uploads(self) -> int:
        if self.place != "s3":
            return 0
        return sum(
            len(self.s3.list_multipart_uploads(Bucket=b).get("Uploads", []))
            for b in ("land", "lake")
        )

    # -- checks
    def check_nothing_lost(self) -> Problems:
        """After a kill: each landed file still in landing, or else in the dump (and the archive
        when archiving), intact; every visible dump file correct."""
        problems = Problems()
        landing, archive, dump = self.read("landing"), self.read("archive"), self.read("dump")
        root = self.work / "landing"
        for private, path in self.claimed().items():
            if os.path.exists(private):
                landing[Path(path).relative_to(root).as_posix()] = md5(Path(private).read_bytes())
        for rel in self.files:
            if rel in landing:
                if landing[rel] != self.landed(rel):
                    problems.add("corrupted", f"landing {rel}")
            elif dump.get(rel) != self.expected(rel):
                problems.add("lost", f"gone from landing, not in the dump: {rel}")
            elif self.mode == "archive" and archive.get(rel) != self.landed(rel):
                problems.add("lost", f"gone from landing, not in the archive: {rel}")
        for rel, digest in dump.items():
            if not is_private(rel.rsplit("/", 1)[-1]) and (
                rel not in self.files or digest != self.expected(rel)
            ):
                problems.add("corrupted", f"dump {rel}")
        return problems

    def check_finished(self) -> Problems:
        """After a run that succeeded: the whole job done exactly once, nothing left behind."""
        problems = Problems()
        landing, archive, dump = self.read("landing"), self.read("archive"), self.read("dump")
        for rel in self.files:
            if rel not in dump:
                problems.add("lost", f"dump {rel}")
            elif dump[rel] != self.expected(rel):
                problems.add("corrupted", f"dump {rel}")
            if self.mode == "archive" and archive.get(rel) != self.landed(rel):
                problems.add("lost" if rel not in archive else "corrupted", f"archive {rel}")
            if rel in landing:
                problems.add("doubled", f"still in landing: {rel}")
        for where, found in (("dump", dump), ("archive", archive), ("landing", landing)):
            for rel in found:
                if is_private(rel.rsplit("/", 1)[-1]):
                    problems.add("stray", f"{where} {rel}")
                elif rel not in self.files:
                    problems.add("doubled", f"{where} {rel}")
        for _ in range(self.uploads()):
            problems.add("stray", "incomplete multipart upload")
        for path in self.home.rglob("journal*.jsonl"):
            problems.add("stray", f"journal {path.name}")
        return problems

    # -- runs
    def start(self, run_id: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(self.params()), str(self.home), run_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            text=True,
        )
        assert (
            child.stdout is not None and child.stdout.readline().strip() == "go"
        ), child.stderr.read()
        return child

    def finish(self, run_id: str = "final") -> tuple[int, str]:
        """Run to the end; the exit code and the error output."""
        child = self.start(run_id)
        _, err = child.communicate(timeout=600)
        return child.returncode, err

    def trigger(self, kind: str, threshold: float) -> Callable[[], bool]:
        """True once the kill point is reached."""
        if kind == "delay":
            deadline = time.monotonic() + threshold
            return lambda: time.monotonic() >= deadline
        if kind == "landing_gone":
            total = len(self.files)
            return lambda: self.count("landing") <= total - threshold
        return lambda: self.count(kind) >= threshold


def kill_when(
    child: subprocess.Popen, fired: Callable[[], bool], poll: float, limit: float = 120
) -> bool:
    """SIGKILL ``child`` once ``fired()``; False if it ended first."""
    deadline = time.monotonic() + limit
    while child.poll() is None and time.monotonic() < deadline and not fired():
        time.sleep(poll)
    if child.poll() is not None:
        child.communicate()
        return False
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    return True


def kill_points(scene: Scene, trials: int, rng: random.Random) -> list[tuple[str, float]]:
    """Trigger kinds in turn: the dump filling, the archive filling or landing emptying, a delay."""
    n = len(scene.files)
    after = "archive" if scene.mode == "archive" else "landing_gone"
    kinds = ["dump", after, "delay"]
    points = []
    for i in range(trials):
        kind = kinds[i % len(kinds)]
        if kind == "delay":
            points.append((kind, rng.uniform(0.0, 0.5)))
        else:
            points.append((kind, rng.choice([1, rng.randint(1, max(1, n - 1)), max(1, n - 2)])))
    return points


@dataclasses.dataclass
class Report:
    trials: int = 0
    killed: int = 0
    problems: Problems = dataclasses.field(default_factory=Problems)
    final: Problems = dataclasses.field(default_factory=Problems)
    final_rc: int = 0
    final_error: str = ""
    seconds: float = 0.0


def run_trials(scene: Scene, points: list[tuple[str, float]], reland: bool = True) -> Report:
    """Kill a run at each point (re-landing the files each time the landing folder was emptied),
    checking nothing was lost after each kill; then finish with one last run and check that."""
    report, t0 = Report(), time.perf_counter()
    poll = 0.05 if scene.place == "s3" else 0.002
    for i, (kind, threshold) in enumerate(points):
        child = scene.start(f"trial-{i}")
        report.killed += kill_when(child, scene.trigger(kind, threshold), poll)
        report.trials += 1
        found = scene.check_nothing_lost()
        if not found.ok and report.problems.ok:
            report.problems = found
        if reland and kind != "delay" and scene.count("landing") == 0 and not scene.claimed():
            _reset_outputs(scene)
            scene.land()
    report.final_rc, report.final_error = scene.finish()
    report.final = scene.check_finished()
    report.seconds = time.perf_counter() - t0
    return report


def _reset_outputs(scene: Scene) -> None:
    """Start over on an emptied landing folder: the next trials then have work to be killed in."""
    if scene.place == "s3":
        for bucket, prefix in (("land", "done/"), ("lake", "raw/")):
            pages = scene.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    scene.s3.delete_objects(
                        Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
                    )
    else:
        for what in ("archive", "dump"):
            shutil.rmtree(scene.work / what, ignore_errors=True)


# ---------------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20, help="kills per configuration")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument(
        "--big-mb", type=float, default=12, help="one big file too (multipart on S3); 0: none"
    )
    parser.add_argument("--places", default="local,s3")
    parser.add_argument("--modes", default="archive,delete")
    parser.add_argument(
        "--transform", action="store_true", help="also each configuration with a transformation"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    configs = [
        (place, mode, transform)
        for place in args.places.split(",")
        for mode in args.modes.split(",")
        for transform in ((False, True) if args.transform else (False,))
    ]
    moto_proc = s3 = env = None
    if "s3" in args.places:
        moto_proc, url, s3, env = _moto()
    print(
        "| landing → dump | mode | transform | trials | killed mid-run | lost | corrupted "
        "| doubled | stray | final run | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for place, mode, transform in configs:
            work = Path(tempfile.mkdtemp(prefix="bench_staging_kill_"))
            try:
                if place == "s3":
                    urllib_post(f"{url}/moto-api/reset")
                scene = Scene(
                    place,
                    mode,
                    transform,
                    work,
                    landed_files(args.files, int(args.big_mb * 2**20)),
                    s3 if place == "s3" else None,
                    env if place == "s3" else None,
                )
                report = run_trials(scene, kill_points(scene, args.trials, rng))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            p, f = report.problems, report.final
            print(
                f"| {place} → {place} | {mode} | {'yes' if transform else 'no'} | {report.trials} "
                f"| {report.killed} | {p.lost + f.lost} | {p.corrupted + f.corrupted} "
                f"| {p.doubled + f.doubled} | {p.stray + f.stray} | exit {report.final_rc} "
                f"| {report.seconds:.0f} |",
                flush=True,
            )
            for found in (p, f):
                if found.first:
                    print(f"  first problem: {found.first}")
            if report.final_rc:
                print(f"  final run failed: {report.final_error.strip().splitlines()[-1:]}")
    finally:
        if moto_proc is not None:
            moto_proc.terminate()
            moto_proc.wait()


def urllib_post(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(url, method="POST")).close()


def _moto() -> tuple[subprocess.Popen, str, Any, dict[str, str]]:
    import boto3

    from bench_staging import start_moto

    proc, url = start_moto()
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return proc, url, client, env


if __name__ == "__main__":
    main()
