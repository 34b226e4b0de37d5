"""Read a routine (JSON or YAML), substitute ``${...}``, resolve paths and validate it whole.

Every problem is collected as ``FILE: PATH: message`` before anything runs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import PluginError, Problem, RoutineError, UserError
from ..executor import accepts_context
from .introspect import location_kinds, signature_schema
from ..registry import ExecutorInfo, Registry, unknown_message
from .schema_check import schema_problems
from .substitution import SECRET_NAME, Substituter, mask_values
from ..alerts.targets import notify_targets
from ..freshness import expectation

SCHEMA_PATH = Path(__file__).with_name("routine.schema.json")


@dataclasses.dataclass(frozen=True)
class TaskCall:
    task: str
    args: dict[str, Any]
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    wants_context: bool = False


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """One executor entry of the routine, validated and resolved."""

    name: str
    executor: ExecutorInfo
    params: dict[str, Any]
    tasks: tuple[TaskCall, ...]
    depends_on: tuple[str, ...]
    active: bool
    path: str


@dataclasses.dataclass(frozen=True)
class Routine:
    name: str
    file: Path
    params: dict[str, Any]
    steps: tuple[StepSpec, ...]
    active: bool
    explicit_dependencies: bool
    run_id: str
    run_date: str
    secrets: frozenset[str]
    hash: str
    notify: tuple[Any, ...] = ()  # NotifyTarget: who is told about failure, success, lateness
    expect: Any = None  # Expectation: how fresh and how quick runs must be (`orchestrate check`)

    def masked(self, value: Any) -> Any:
        return mask_values(value, set(self.secrets))


@lru_cache(maxsize=1)
def routine_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


_PARAM_REF = re.compile(r"\$\{params\.([A-Za-z_][\w-]*)")


def load_routine(
    path: str | os.PathLike[str] | Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    run_id: str | None = None,
    env: Mapping[str, str] | None = None,
    policy: LocationPolicy | None = None,
    strict_params: bool = True,
) -> Routine:
    """Load and validate ``path`` (or a routine given as a dict); raise :class:`RoutineError`
    listing every problem. A dict's relative locations resolve against the working directory.

    ``env`` is what ``${env.X}`` sees (default: the process environment); ``policy`` may refuse
    locations (data or code) before any executor check looks at them. With ``strict_params`` a
    param that the routine neither declares nor references is a problem (a typo, most likely);
    the Lambda adapter turns it off, as events carry context (bucket, key) a routine may ignore.
    """
    if isinstance(path, Mapping):
        file, doc = Path.cwd() / "<routine dict>", _plain(path)
    else:
        file = Path(path)
        doc = parse_file(file)
    loader = _Loader(file, doc, registry or Registry(), env if env is not None else os.environ, policy)
    params = loader.known_params(params or {}) if strict_params else params or {}
    return loader.load(params, run_id)


def _plain(doc: Mapping[str, Any]) -> Any:
    """A routine given as a dict, as if read from JSON: a private copy with JSON's types only."""
    try:
        return json.loads(json.dumps(doc, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RoutineError([Problem("<routine dict>", "", f"not JSON data ({exc}); use str, numbers, "
                                    "bools, None, lists and dicts with string keys")]) from None


def parse_file(file: Path) -> Any:
    label = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutineError([Problem(label, "", f"cannot read routine: {exc.strerror or exc}")]) from None
    if file.suffix.lower() in (".yaml", ".yml"):
        return _parse_yaml(label, text)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise RoutineError([Problem(label, "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    except _DuplicateKey as exc:
        raise RoutineError([Problem(label, "", str(exc))]) from None


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}: the second would silently replace the first; rename or merge them")
        result[key] = value
    return result


def _parse_yaml(label: str, text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_strict_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise RoutineError([Problem(label, "", f"invalid YAML{where}: {reason}")]) from None


@lru_cache(maxsize=1)
def _strict_yaml_loader() -> type:
    """YAML as plain as JSON: string keys only, no duplicate keys, dates left as strings."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str):
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} must be a string; quote it",
                                                            key_node.start_mark)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}: the second would silently replace the first", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    StrictLoader.yaml_implicit_resolvers = {
        first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return StrictLoader


LocationPolicy = Callable[[str, str], "str | None"]
"""``policy(kind, location) -> refusal or None``; ``kind`` is ``"location"`` (data) or ``"code"``."""


class _Loader:
    def __init__(self, file: Path, doc: Any, registry: Registry, env: Mapping[str, str],
                 policy: LocationPolicy | None = None) -> None:
        self.file, self.doc, self.registry, self.env, self.policy = file, doc, registry, env, policy
        self.folder = file.resolve().parent
        self.problems: list[Problem] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(Problem(str(self.file), path, message))

    def fail_if_problems(self) -> None:
        if self.problems:
            raise RoutineError(self.problems)

    def load(self, overrides: Mapping[str, Any], run_id: str | None) -> Routine:
        if not isinstance(self.doc, dict):
            self.report("", "a routine must be a JSON/YAML object with routine_name and executors")
            self.fail_if_problems()
        broken = self.check_structure()
        params = self.merge_params(overrides)
        now = dt.datetime.now(dt.timezone.utc)
        run = {"id": run_id or str(uuid.uuid4()), "date": now.date().isoformat()}
        subst = Substituter(params, self.env, run)
        secrets = {str(v) for k, v in params.items() if SECRET_NAME.search(k) and v}
        entries = self.entries()
        steps = [None if _under(path, broken) else self.step(entry, path, subst) for path, entry in entries]
        self.check_names_and_dependencies(steps, entries)
        notify = notify_targets(subst.walk(self.doc.get("notify") or [], "notify", self.report), self.report)
        expect = expectation(self.doc.get("expect"), self.report)
        self.fail_if_problems()
        secrets |= {secret for target in notify for secret in target.secrets()}
        return Routine(
            name=self.doc["routine_name"],
            file=self.file,
            params=params,
            steps=tuple(s for s in steps if s is not None),
            active=self.doc.get("active", True),
            explicit_dependencies=any("depends_on" in e for _, e in entries),
            run_id=run["id"],
            run_date=run["date"],
            secrets=frozenset(secrets | subst.secrets),
            hash=self.digest(),
            notify=tuple(notify),
            expect=expect,
        )

    def check_structure(self) -> list[str]:
        """Report schema problems; stop unless they are confined to single executor entries,
        whose other problems are then still worth reporting for the rest."""
        found = schema_problems(self.doc, routine_schema())
        for path, message in found:
            self.report(path, message)
        paths = [path for path, _ in found]
        if any(path in ("", "executors", "params") for path in paths):
            self.fail_if_problems()  # nothing below can be read; other root problems do not stop us
        # An entry is skipped only when what the step check needs first is broken: the entry
        # itself or its executor. Problems elsewhere (an unknown key, bad params or tasks) still
        # leave its other parts worth checking, so every problem is reported in one round.
        if isinstance(self.doc["executors"], dict):
            entries = [".".join(path.split(".")[:2]) for path in paths]
        else:
            entries = [path.split("]")[0] + "]" for path in paths]
        return [entry for entry, path in zip(entries, paths) if path in (entry, f"{entry}.executor")]

    def known_params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The overrides the routine declares or references; each other one is reported."""
        declared = self.doc.get("params") if isinstance(self.doc, dict) else None
        known = set(declared) if isinstance(declared, dict) else set()
        known |= set(_PARAM_REF.findall(json.dumps(self.doc, default=str)))
        for key in overrides:
            if key not in known:
                self.report("--param", unknown_message("param", key, sorted(known)))
        return {k: v for k, v in overrides.items() if k in known}

    def merge_params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        params = dict(self.doc.get("params") or {})
        for key, value in overrides.items():
            default = params.get(key)
            textual = isinstance(value, str) and default is not None and not isinstance(default, str)
            params[key] = _coerce(key, value) if textual else value
        return params

    def digest(self) -> str:
        """Identity of the routine's definition (not of this run's params): resume compares it."""
        canonical = json.dumps(self.doc, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        executors = self.doc["executors"]
        if isinstance(executors, list):
            return [(f"executors[{i}]", e) for i, e in enumerate(executors) if isinstance(e, dict)]
        return [(f"executors.{key}", {"name": key, "executor": key, **value}) for key, value in executors.items()
                if isinstance(value, dict)]

    def step(self, entry: dict[str, Any], path: str, subst: Substituter) -> StepSpec | None:
        ref = entry["executor"]
        try:
            info = self.registry.resolve(ref)
        except (UserError, PluginError) as exc:
            self.report(f"{path}.executor" if "[" in path else path, str(exc))
            return None
        raw_params = entry.get("params") or {}
        if isinstance(raw_params, dict):
            params = subst.walk(raw_params, f"{path}.params", self.report)
            params, refused = self.check_params(info, params, f"{path}.params")
        else:  # already reported by the schema; the tasks are still checked
            params, refused = {}, False
        raw_tasks = entry.get("tasks") if isinstance(entry.get("tasks"), list) else []
        calls = (self.task_call(info, t, f"{path}.tasks[{i}]", subst, params, refused) for i, t in enumerate(raw_tasks))
        tasks = tuple(filter(None, calls))
        name = entry.get("name")
        return StepSpec(
            name=name if isinstance(name, str) and name else ref,
            executor=info,
            params=params,
            tasks=tasks,
            depends_on=tuple(_names(entry.get("depends_on"))),
            active=entry.get("active", True) is not False,
            path=path,
        )

    def check_params(self, info: ExecutorInfo, params: dict[str, Any], path: str) -> tuple[dict[str, Any], bool]:
        """Schema, locations (resolved, then the location policy), then the executor's own checks.

        A location the policy refuses is not looked at any further (no file is read for it); the
        second value says whether that happened, so the step's task checks are skipped too."""
        schema = info.params_schema
        found = schema_problems(params, schema, prefix=path, what="param")
        for sub, message in found:
            self.report(sub, message)
        params, refused = self.resolve_locations(params, location_kinds(schema), path)
        if not refused:
            for key, message in _deeper_checks(lambda: info.cls.validate_params(params), {p for p, _ in found}, path):
                self.report(f"{path}.{key}" if key else path, message)
        return params, refused

    def task_call(self, info: ExecutorInfo, raw: Any, path: str, subst: Substituter, params: dict[str, Any],
                  refused: bool) -> TaskCall | None:
        spec = {"task": raw} if isinstance(raw, str) else raw
        if not isinstance(spec, dict) or not isinstance(spec.get("task"), str):
            return None  # the schema reported it
        methods = info.cls.tasks()
        name = spec["task"]
        if name not in methods:
            where = path if isinstance(raw, str) else f"{path}.task"
            self.report(where, unknown_message("task", name, list(methods)) + f" ({info.class_name} tasks: {', '.join(methods)})")
            return None
        method = methods[name]
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            return None  # the schema reported it
        args = subst.walk(args, f"{path}.args", self.report)
        schema = signature_schema(method)
        found = schema_problems(args, schema, prefix=f"{path}.args", what="argument")
        for sub, message in found:
            self.report(sub, message)
        args_path = f"{path}.args"
        args, refused_args = self.resolve_locations(args, location_kinds(schema), args_path)
        if not (refused or refused_args):
            checks = _deeper_checks(lambda: info.cls.validate_args(name, args, params), {p for p, _ in found}, args_path)
            for sub, message in checks:
                self.report(args_path + (f".{sub}" if sub and not sub.startswith("[") else sub), message)
        try:
            return TaskCall(
                task=name,
                args=args,
                retries=spec.get("retries", 0),
                retry_delay=float(spec.get("retry_delay", 1.0)),
                timeout=spec.get("timeout"),
                wants_context=accepts_context(method),
            )
        except (TypeError, ValueError):
            return None  # a malformed retry_delay: the schema reported it

    def resolve_locations(self, values: dict[str, Any], kinds: dict[str, str], path: str) -> tuple[dict[str, Any], bool]:
        """Relative local paths made absolute; each location then passed to the policy, if any."""
        resolved, refused = dict(values), False
        for key in kinds.keys() & resolved.keys():
            value = resolved[key]
            if not isinstance(value, str) or not value:
                continue
            if "://" not in value and not os.path.isabs(value):
                resolved[key] = value = str(self.folder / value)
            if self.policy is not None and (message := self.policy(kinds[key], value)) is not None:
                self.report(f"{path}.{key}", message)
                refused = True
        return resolved, refused

    def check_names_and_dependencies(self, steps: list[StepSpec | None], entries: list[tuple[str, dict[str, Any]]]) -> None:
        seen: dict[str, str] = {}
        for path, entry in entries:
            name = entry.get("name") or entry.get("executor", path)
            if name in seen:
                self.report(f"{path}.name", f"step name {name!r} is already used at {seen[name]}; give each entry a unique name")
            seen.setdefault(name, path)
        graph: dict[str, list[str]] = {}
        for path, entry in entries:
            name = entry.get("name") or entry.get("executor", path)
            for i, dep in enumerate(_names(entry.get("depends_on"))):
                if dep not in seen:
                    self.report(f"{path}.depends_on[{i}]", unknown_message("step", dep, list(seen)))
                elif dep == name:
                    self.report(f"{path}.depends_on[{i}]", f"step {name!r} cannot depend on itself")
            graph[name] = [d for d in _names(entry.get("depends_on")) if d in seen and d != name]
        cycle = find_cycle(graph)
        if cycle:
            self.report(f"{seen[cycle[0]]}.depends_on", "dependency cycle: " + " -> ".join(cycle) + "; remove one of these depends_on")


def _names(value: Any) -> list[str]:
    """``depends_on`` as a list of names, whatever the schema said about it."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _deeper_checks(check: Any, reported: set[str], prefix: str) -> list[tuple[str, str]]:
    """An executor's own checks, run even when the schema found problems (so all are reported at once);
    they may then meet values of the wrong type: a check that breaks on them, or repeats a problem
    the schema already reported, adds nothing."""
    try:
        found = list(check())
    except Exception:
        return []
    return [(key, message) for key, message in found
            if not any(r == f"{prefix}.{key}" or r.startswith(f"{prefix}.{key}.") for r in reported)]


def _under(path: str, broken: list[str]) -> bool:
    return any(path == b or path.startswith(b + ".") or path.startswith(b + "[") for b in broken)


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a list of names (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def _coerce(key: str, value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise UserError(f"--param {key}={value}: the routine's default is not a string, so give a JSON value") from None


def parse_param_overrides(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings from the command line."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param {pair!r}: expected KEY=VALUE")
        result[key.strip()] = value
    return result

