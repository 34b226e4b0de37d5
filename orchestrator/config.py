"""Read a routine (JSON or YAML), substitute ``${...}``, resolve paths and validate it whole.

Every problem is collected as ``FILE: PATH: message`` before anything runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import PluginError, Problem, RoutineError, UserError
from .executor import accepts_context
from .ids import new_id
from .introspect import location_kinds, signature_schema
from .registry import ExecutorInfo, Registry, unknown_message
from .schema_check import schema_problems
from .substitution import SECRET_NAME, Substituter, mask_values

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

    def masked(self, value: Any) -> Any:
        return mask_values(value, set(self.secrets))


@lru_cache(maxsize=1)
def routine_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def load_routine(
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    run_id: str | None = None,
    env: Mapping[str, str] | None = None,
    policy: LocationPolicy | None = None,
) -> Routine:
    """Load and validate ``path``; raise :class:`RoutineError` listing every problem.

    ``env`` is what ``${env.X}`` sees (default: the process environment); ``policy`` may refuse
    locations (data or code) before any executor check looks at them.
    """
    file = Path(path)
    doc = parse_file(file)
    loader = _Loader(file, doc, registry or Registry(), env if env is not None else os.environ, policy)
    return loader.load(params or {}, run_id)


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
        today = time.strftime("%Y-%m-%d", time.gmtime())  # UTC
        run = {"id": run_id or new_id(), "date": today}
        subst = Substituter(params, self.env, run)
        secrets = {str(v) for k, v in params.items() if SECRET_NAME.search(k) and v}
        entries = self.entries()
        steps = [None if _under(path, broken) else self.step(entry, path, subst) for path, entry in entries]
        self.check_names_and_dependencies(steps, entries)
        self.fail_if_problems()
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
        )

    def check_structure(self) -> list[str]:
        """Report schema problems; stop unless they are confined to single executor entries,
        whose other problems are then still worth reporting for the rest."""
        found = schema_problems(self.doc, routine_schema())
        for path, message in found:
            self.report(path, message)
        paths = [path for path, _ in found]
        if any(not path.startswith("executors") or path == "executors" for path in paths):
            self.fail_if_problems()
        if isinstance(self.doc["executors"], dict):
            return [".".join(path.split(".")[:2]) for path in paths]
        return [path.split("]")[0] + "]" for path in paths]

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
        params = subst.walk(entry.get("params") or {}, f"{path}.params", self.report)
        params, refused = self.check_params(info, params, f"{path}.params")
        calls = (self.task_call(info, t, f"{path}.tasks[{i}]", subst, params, refused) for i, t in enumerate(entry["tasks"]))
        tasks = tuple(filter(None, calls))
        return StepSpec(
            name=entry.get("name") or ref,
            executor=info,
            params=params,
            tasks=tasks,
            depends_on=tuple(entry.get("depends_on") or ()),
            active=entry.get("active", True),
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
        methods = info.cls.tasks()
        name = spec["task"]
        if name not in methods:
            where = path if isinstance(raw, str) else f"{path}.task"
            self.report(where, unknown_message("task", name, list(methods)) + f" ({info.class_name} tasks: {', '.join(methods)})")
            return None
        method = methods[name]
        args = subst.walk(spec.get("args") or {}, f"{path}.args", self.report)
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
        return TaskCall(
            task=name,
            args=args,
            retries=spec.get("retries", 0),
            retry_delay=float(spec.get("retry_delay", 1.0)),
            timeout=spec.get("timeout"),
            wants_context=accepts_context(method),
        )

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
            for i, dep in enumerate(entry.get("depends_on") or ()):
                if dep not in seen:
                    self.report(f"{path}.depends_on[{i}]", unknown_message("step", dep, list(seen)))
                elif dep == name:
                    self.report(f"{path}.depends_on[{i}]", f"step {name!r} cannot depend on itself")
            graph[name] = [d for d in entry.get("depends_on") or () if d in seen and d != name]
        cycle = find_cycle(graph)
        if cycle:
            self.report(f"{seen[cycle[0]]}.depends_on", "dependency cycle: " + " -> ".join(cycle) + "; remove one of these depends_on")


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

