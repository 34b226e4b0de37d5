"""Read a routine (JSON or YAML), substitute ``${...}``, resolve paths and validate it whole.

Every problem is collected as ``FILE: PATH: message`` before anything runs.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from ..records import FrozenRecord, frozen_record
from ..errors import PluginError, Problem, RoutineError, UserError
from ..executor import Place, accepts_context
from ..ids import new_id, sha256_hex
from ..limits import (MAX_DEPTH, DocumentProblem, check_document, decode_utf8, location_problem,
                      read_bounded, yaml_graph_problem)
from ..masking import mask_shown
from ..registry import ExecutorInfo, Registry, unknown_message
from .outputs import StepOutput, check_references, deferred_paths, parse
from .introspect import item_location_kinds, location_kinds, signature_schema
from .schema_check import SHOWN_CHARS, schema_problems
from .substitution import SECRET_NAME, Deferred, Substituter, mask_values, secret_values

SCHEMA_PATH = Path(__file__).with_name("routine.schema.json")


@frozen_record
class TaskCall(FrozenRecord):
    """One task of a step: its method name, arguments, retries and timeout."""

    task: str
    args: dict[str, Any]
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    wants_context: bool = False
    references: tuple[StepOutput, ...] = ()  # ``${steps...}`` in args: resolved at run time

    # Written out (see records.FACTORY): one is made per distinct task entry, too many for the
    # shared one. Straight into __dict__, as FrozenRecord's own __init__ does.
    def __init__(self, task: str, args: dict[str, Any], retries: int = 0,
                 retry_delay: float = 1.0, timeout: float | None = None,
                 wants_context: bool = False, references: tuple[StepOutput, ...] = ()) -> None:
        self.__dict__.update(task=task, args=args, retries=retries, retry_delay=retry_delay,
                             timeout=timeout, wants_context=wants_context, references=references)


@frozen_record
class StepSpec(FrozenRecord):
    """One executor entry of the routine, validated and resolved."""

    name: str
    executor: ExecutorInfo
    params: dict[str, Any]
    tasks: tuple[TaskCall, ...]
    depends_on: tuple[str, ...]
    active: bool
    path: str


@frozen_record
class Routine(FrozenRecord):
    """A routine file, validated whole: params substituted, steps resolved, secrets known."""

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
    trusted: bool = True  # False when loaded under a location policy (a routine from an event)
    notify: tuple[Any, ...] = ()  # NotifyTarget: who is told about failure, success, lateness
    expect: Any = None  # Expectation: how fresh and how quick runs must be (`orchestrate check`)
    lineage: Any = None  # LineageSettings, False (turned off) or None (the environment decides)

    def masked(self, value: Any) -> Any:
        return mask_values(value, set(self.secrets))


@lru_cache(maxsize=1)
def routine_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


_PARAM_REF = re.compile(r"\$\{params\.([A-Za-z_][\w-]*)")


def load_routine(
    path: str | os.PathLike[str] | Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    run_id: str | None = None,
    env: Mapping[str, str] | None = None,
    policy: LocationPolicy | None = None,
    strict_params: bool = True,
    run_date: str | None = None,
    resolve_secrets: bool = False,
) -> Routine:
    """Load and validate ``path`` (or a routine given as a dict); raise :class:`RoutineError`
    listing every problem. A dict's relative locations resolve against the working directory.

    ``env`` is what ``${env.X}`` sees (default: the process environment); ``policy`` may refuse
    locations (data or code) before any executor check looks at them. With ``strict_params`` a
    param that the routine neither declares nor references is a problem (a typo, most likely);
    the Lambda adapter turns it off, as events carry context (bucket, key) a routine may ignore.
    A routine loaded under a policy is untrusted (``Routine.trusted`` False). ``run_date`` is
    ``${run.date}`` when the run started elsewhere (a state machine's execution), else today (UTC).
    ``resolve_secrets`` reads ``${secret.X}``/``${ssm.X}`` through the ``resolve_secret`` hook (to
    run); without it they stay references (to validate, plan or compile).
    """
    if isinstance(path, Mapping):
        file, doc = Path.cwd() / "<routine dict>", _plain(path)
    else:
        file = Path(path)
        doc = parse_file(file)
    loader = _Loader(
        file, doc, registry or Registry(), env if env is not None else os.environ, policy
    )
    loader.resolve_secrets = resolve_secrets
    params = loader.known_params(params or {}) if strict_params else params or {}
    return loader.load(params, run_id, run_date)


def _plain(doc: Mapping[str, Any]) -> Any:
    """A routine given as a dict, as if read from JSON: a private copy with JSON's types only."""
    try:
        # The round trip is the copy (a caller mutating its dict later cannot change the loaded
        # routine) and the type check in one; allow_nan=False because NaN and Infinity are not JSON
        # numbers (from a file, the schema refuses them where a number is expected).
        return json.loads(json.dumps(doc, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RoutineError(
            [
                Problem(
                    "<routine dict>",
                    "",
                    f"not JSON data ({exc}); use str, numbers, "
                    "bools, None, lists and dicts with string keys",
                )
            ]
        ) from None


def parse_file(file: Path) -> Any:
    """The routine document, within the bounds of :mod:`.limits`: anything else is one problem."""
    label = str(file)
    try:
        with open(file, "rb") as stream:
            text = decode_utf8(read_bounded(stream))
        doc = _parse_yaml(text) if file.suffix.lower() in (".yaml", ".yml") else _parse_json(text)
        check_document(doc)
    except OSError as exc:
        raise RoutineError(
            [Problem(label, "", f"cannot read routine: {exc.strerror or exc}")]
        ) from None
    except DocumentProblem as exc:
        raise RoutineError([Problem(label, exc.path, str(exc))]) from None
    return doc


_TOO_MANY_DIGITS = "a number with more digits than Python reads (4,300); write it as a string"


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DocumentProblem(f"invalid JSON at {where}: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise DocumentProblem(str(exc)) from None
    except RecursionError:  # deeper than Python's own recursion limit, far deeper than MAX_DEPTH
        raise DocumentProblem(f"nested deeper than {MAX_DEPTH} levels; flatten it") from None
    except ValueError:  # the only other thing the decoder refuses: an integer too long to convert
        raise DocumentProblem(_TOO_MANY_DIGITS) from None


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(
                f"duplicate key {key!r}: the second would silently replace the first; "
                "rename or merge them"
            )
        result[key] = value
    return result


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_strict_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise DocumentProblem(f"invalid YAML{where}: {reason}") from None
    except DocumentProblem:
        raise
    except ValueError:  # a scalar the resolver took for a number, too long to convert
        raise DocumentProblem(_TOO_MANY_DIGITS) from None


@lru_cache(maxsize=1)
def _strict_yaml_loader() -> type:
    """YAML as plain as JSON: string keys only, no duplicate keys, dates left as strings."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            """Nesting is bounded while the text is read, before Python's own recursion limit."""
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    deep = f"nested deeper than {MAX_DEPTH} levels; flatten it"
                    # types-PyYAML leaves peek_event unannotated
                    mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                    raise yaml.composer.ComposerError(None, None, deep, mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_document(self, node: Any) -> Any:
            """Aliases expanded, tags and nesting checked on the nodes before any value is built."""
            if (problem := yaml_graph_problem(node)) is not None:
                raise problem
            return super().construct_document(node)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                # YAML 1.1 reads unquoted on/off/yes/no as booleans and 1 as an int, also as keys:
                # safe_load turns "on: 1" into {True: 1}. A routine's keys are names, so anything
                # else is refused.
                if not isinstance(key, str):
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} must be a string; quote it", key_node.start_mark
                    )
                # PyYAML keeps the last of two equal keys without a word, as json.loads does (see
                # _unique_keys).
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r}: the second would silently replace the first",
                        key_node.start_mark,
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # Without the timestamp resolver an unquoted 2026-11-21 stays the string it is in JSON instead
    # of becoming a datetime.date, which substitution, the schema and JSON records could not take.
    StrictLoader.yaml_implicit_resolvers = {
        first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return StrictLoader


LocationPolicy = Callable[[Place], "str | None"]
"""``policy(place) -> refusal or None``; ``place.kind`` is ``"location"`` (data) or ``"code"``."""


class _Loader:
    def __init__(self, file: Path, doc: Any, registry: Registry, env: Mapping[str, str],
                 policy: LocationPolicy | None = None) -> None:
        self.file, self.doc, self.registry, self.env, self.policy = file, doc, registry, env, policy
        self.folder = file.resolve().parent
        self.problems: list[Problem] = []
        self.secrets: set[str] = set()  # values under secret-looking names in params and args
        self.substituter: Substituter | None = None
        self.resolve_secrets = False

    def secret_resolver(self) -> Any:
        """Reads a reference through the ``resolve_secret`` hook; the plugins that implement it are
        imported on the first reference only (most routines hold none)."""
        if not self.resolve_secrets:
            return None
        return lambda kind, name: self.registry.hook("resolve_secret")(kind=kind, name=name)

    def report(self, path: str, message: str, code: str = "", subject: str = "") -> None:
        self.problems.append(Problem(str(self.file), path, message, code, subject))

    def fail_if_problems(self) -> None:
        """Stop with every problem found, secrets masked: a message may quote a wrong value."""
        if self.problems:
            secrets = self.secrets | (self.substituter.secrets if self.substituter else set())
            masked = [mask_shown(p.message, secrets, SHOWN_CHARS) for p in self.problems]
            problems = [dataclasses.replace(p, message=m) for p, m in zip(self.problems, masked)]
            raise RoutineError(problems)

    def load(self, overrides: Mapping[str, Any], run_id: str | None,
             run_date: str | None = None) -> Routine:
        if not isinstance(self.doc, dict):
            self.report("", "a routine must be a JSON/YAML object with routine_name and executors")
            self.fail_if_problems()
        broken = self.check_structure()
        # ${run.date} in UTC, so the same moment gives the same date on a laptop and in Lambda.
        today = time.strftime("%Y-%m-%d", time.gmtime())  # UTC
        run = {"id": run_id or new_id(), "date": run_date or today}
        params, secrets = self.merge_params(overrides, run)
        self.secrets |= secrets
        subst = self.substituter = Substituter(params, self.env, run, self.secret_resolver())
        # Params under secret-looking names are masked whether they came from the file, an env var
        # or --param.
        self.secrets |= {str(v) for k, v in params.items() if SECRET_NAME.search(k) and v}
        entries = self.entries()
        steps = [
            None if _under(path, broken) else self.step(entry, path, subst)
            for path, entry in entries
        ]
        self.check_names_and_dependencies(steps, entries)
        built = [s for s in steps if s is not None]
        explicit = any("depends_on" in e for _, e in entries)
        unbuilt = {_step_name(e, p) for (p, e), s in zip(entries, steps) if s is None}
        check_references(built, explicit, self.report, unbuilt)
        notify, expect = self.alerting(subst)
        lineage = self.lineage(subst)
        self.fail_if_problems()
        self.secrets |= {secret for target in notify for secret in target.secrets()}
        self.secrets |= {lineage.api_key} if getattr(lineage, "api_key", None) else set()
        return Routine(
            name=self.doc["routine_name"],
            file=self.file,
            params=params,
            steps=tuple(s for s in steps if s is not None),
            active=self.doc.get("active", True),
            explicit_dependencies=any("depends_on" in e for _, e in entries),
            run_id=run["id"],
            run_date=run["date"],
            secrets=frozenset(subst.secrets | self.secrets),
            hash=self.digest(),
            trusted=self.policy is None,
            notify=tuple(notify),
            expect=expect,
            lineage=lineage,
        )

    def alerting(self, subst: Substituter) -> tuple[list[Any], Any]:
        """Who is told about runs (``notify:``) and how fresh they must be (``expect:``); their
        modules are imported only for a routine that has these blocks."""
        notify, expect = [], None
        if self.doc.get("notify"):
            from ..alerts.targets import notify_targets

            notify = notify_targets(
                subst.walk(self.doc["notify"], "notify", self.report), self.report
            )
        if isinstance(self.doc.get("expect"), dict):
            from ..freshness import expectation

            expect = expectation(self.doc["expect"], self.report)
        return notify, expect

    def lineage(self, subst: Substituter) -> Any:
        """Where this routine's lineage events go (``lineage:``); None when it says nothing."""
        if "lineage" not in self.doc:
            return None
        from ..lineage.config import from_block

        return from_block(subst.walk(self.doc.get("lineage"), "lineage", self.report),
                          self.folder, self.report)

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
        return [
            entry for entry, path in zip(entries, paths) if path in (entry, f"{entry}.executor")
        ]

    def known_params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The overrides the routine declares or references; each other one is reported."""
        declared = self.doc.get("params") if isinstance(self.doc, dict) else None
        known = set(declared) if isinstance(declared, dict) else set()
        # A routine may use ${params.X} without declaring X under params (it must then be given);
        # such a param is known as well, not a typo.
        known |= set(_PARAM_REF.findall(json.dumps(self.doc, default=str)))
        for key in overrides:
            if key not in known:
                self.report("--param", unknown_message("param", key, sorted(known)))
        return {k: v for k, v in overrides.items() if k in known}

    def merge_params(self, overrides: Mapping[str, Any],
                     run: Mapping[str, str]) -> tuple[dict[str, Any], set[str]]:
        """The routine's params with their ``${env.X}`` and ``${run.X}`` resolved, then the
        overrides (values, taken as given), and the secret values the references brought in."""
        defaults = Substituter(None, self.env, run, self.secret_resolver())
        params = defaults.walk(dict(self.doc.get("params") or {}), "params", self.report)
        for key, value in overrides.items():
            default = params.get(key)
            # A --param value is always text. Where the routine's default is a number, bool, list or
            # object, the text is read as JSON, so "--param retries=3" stays an int; where the
            # default is a string (or there is none), the text is kept as is: a "01234" postcode
            # must not become 1234.
            textual = (
                isinstance(value, str) and default is not None and not isinstance(default, str)
            )
            params[key] = value = _coerce(key, value) if textual else value
            try:  # a value from the command line or an event is held to the file's bounds
                check_document(value)
            except DocumentProblem as exc:
                inner = exc.path if not exc.path or exc.path.startswith("[") else f".{exc.path}"
                self.report(f"params.{key}{inner}", f"the value given: {exc}")
        return params, defaults.secrets

    def digest(self) -> str:
        """Identity of the routine's definition (not of this run's params): resume compares it."""
        # Key order and formatting do not change the digest; any change of content does.
        canonical = json.dumps(self.doc, sort_keys=True, default=str)
        return sha256_hex(canonical.encode())

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        executors = self.doc["executors"]
        if isinstance(executors, list):
            return [(f"executors[{i}]", e) for i, e in enumerate(executors) if isinstance(e, dict)]
        return [
            # The seed's dict form: the key is both the step's name and the executor to resolve.
            (f"executors.{key}", {"name": key, "executor": key, **value})
            for key, value in executors.items()
            if isinstance(value, dict)
        ]

    def step(self, entry: dict[str, Any], path: str, subst: Substituter) -> StepSpec | None:
        ref = entry["executor"]
        try:
            info = self.registry.resolve(ref)
        except (UserError, PluginError) as exc:
            # In the dict form the executor is the entry's key, so the problem points at the entry
            # itself.
            self.report(f"{path}.executor" if "[" in path else path, str(exc))
            return None
        raw_params = entry.get("params") or {}
        if isinstance(raw_params, dict):
            params = subst.walk(raw_params, f"{path}.params", self.report)
            self.secrets |= secret_values(params)
            params, refused = self.check_params(info, params, f"{path}.params")
        else:  # already reported by the schema; the tasks are still checked
            params, refused = {}, False
        given = entry.get("tasks")
        raw_tasks = given if isinstance(given, list) else []
        tasks = tuple(self.task_calls(info, raw_tasks, path, subst, params, refused))
        name = entry.get("name")
        return StepSpec(
            name=name if isinstance(name, str) and name else ref,
            executor=info,
            params=params,
            tasks=tasks,
            depends_on=tuple(d for _, d in _dependencies(entry)),
            active=entry.get("active", True) is not False,
            path=path,
        )

    def check_params(
        self, info: ExecutorInfo, params: dict[str, Any], path: str
    ) -> tuple[dict[str, Any], bool]:
        """Schema, locations (resolved, then the location policy), then the executor's own checks.

        A location the policy refuses is not looked at any further (no file is read for it); the
        second value says whether that happened, so the step's task checks are skipped too."""
        schema = info.params_schema
        found = schema_problems(params, schema, prefix=path, what="param")
        for sub, message in found:
            self.report(sub, message)
        params, refused = self.resolve_all_locations(params, schema, path)
        reported = {p for p, _ in found}
        if not refused:
            refused = self.check_places(lambda: info.cls.places(params), path, reported)
        if not refused:
            checks = _deeper_checks(lambda: info.cls.validate_params(params), reported, path)
            for key, message in checks:
                self.report(f"{path}.{key}" if key else path, message)
        return params, refused

    def task_calls(self, info: ExecutorInfo, raw_tasks: list[Any], path: str,
                   subst: Substituter, params: dict[str, Any], refused: bool) -> list[TaskCall]:
        """The step's task calls; identical entries are checked once. A step often calls the
        same task many times with the same args (or none), and the check of an entry depends
        only on it and on the step: a clean result is reused for its twins. Entries holding
        ``${`` (a reference is parsed per path) and those with problems are checked each time."""
        calls: list[TaskCall] = []
        checked: dict[tuple[str, str], TaskCall] = {}
        for i, raw in enumerate(raw_tasks):
            key = _memo_key(raw)
            if key is not None and (twin := checked.get(key)) is not None:
                calls.append(twin)
                continue
            before = len(self.problems)
            call = self.task_call(info, raw, f"{path}.tasks[{i}]", subst, params, refused)
            if call is None:
                continue
            calls.append(call)
            if key is not None and len(self.problems) == before:
                checked[key] = call
        return calls

    def task_call(
        self,
        info: ExecutorInfo,
        raw: Any,
        path: str,
        subst: Substituter,
        params: dict[str, Any],
        refused: bool,
    ) -> TaskCall | None:
        spec = {"task": raw} if isinstance(raw, str) else raw
        if not isinstance(spec, dict) or not isinstance(spec.get("task"), str):
            return None  # the schema reported it
        methods = info.cls.tasks()
        name = spec["task"]
        if name not in methods:
            where = path if isinstance(raw, str) else f"{path}.task"
            self.report(
                where,
                unknown_message("task", name, list(methods))
                + f" ({info.class_name} tasks: {', '.join(methods)})",
            )
            return None
        method = methods[name]
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            return None  # the schema reported it
        args_path = f"{path}.args"
        args, references = self.task_args(args, args_path, subst)
        # A Deferred is a template with ${steps...} still in it, not the value the task will get:
        # masking its text would hide nothing.
        self.secrets |= {v for v in secret_values(args) if not isinstance(v, Deferred)}
        schema = signature_schema(method)
        later = set(deferred_paths(args, args_path))  # known only at run time: not judged now
        found = [(sub, message) for sub, message in schema_problems(args, schema, prefix=args_path,
                                                                    what="argument")
                 if sub not in later]
        for sub, message in found:
            self.report(sub, message)
        args, refused_args = self.resolve_all_locations(args, schema, args_path)
        if not (refused or refused_args):
            declared = functools.partial(info.cls.task_places, name, args, params)
            refused_args = self.check_places(declared, args_path, {p for p, _ in found})
        if not (refused or refused_args):
            checks = _deeper_checks(
                lambda: info.cls.validate_args(name, args, params), {p for p, _ in found}, args_path
            )
            for sub, message in checks:
                where = args_path + (f".{sub}" if sub and not sub.startswith("[") else sub)
                if where not in later:
                    self.report(where, message)
        try:
            return TaskCall(
                task=name,
                args=args,
                retries=spec.get("retries", 0),
                retry_delay=float(spec.get("retry_delay", 1.0)),
                timeout=spec.get("timeout"),
                wants_context=accepts_context(method),
                references=tuple(references),
            )
        except (TypeError, ValueError):
            return None  # a malformed retry_delay: the schema reported it

    def task_args(self, args: dict[str, Any], path: str,
                  subst: Substituter) -> tuple[dict[str, Any], list[StepOutput]]:
        """Args substituted, ``${steps...}`` references kept for run time and parsed. A routine
        from an event may not use them: the location policy could not judge their values."""
        references: list[StepOutput] = []

        def defer(ref: str, where: str, report: Callable[[str, str], None]) -> None:
            parsed = parse(ref, where)
            if isinstance(parsed, str):
                report(where, parsed)
            elif self.policy is not None:
                report(where, f"${{{ref}}}: a routine from an event cannot read step outputs "
                              "(their values are not known when the routine is checked)")
            else:
                references.append(parsed)

        # Only task args may hold ${steps...}: outside this call defer is None, and lookup reports
        # such a reference (in params, say) as an error.
        subst.defer = defer
        try:
            return subst.walk(args, path, self.report), references
        finally:
            subst.defer = None

    def resolve_all_locations(self, values: dict[str, Any], schema: dict[str, Any],
                              path: str) -> tuple[dict[str, Any], bool]:
        """Locations at the top level and inside lists of objects (``mounts: [{source: ...}]``)."""
        if not values:  # a task without args (most of them): no schema walk per task
            return {}, False
        resolved, refused = self.resolve_locations(values, location_kinds(schema), path)
        for key, kinds in item_location_kinds(schema).items():
            items = resolved.get(key)
            if not isinstance(items, list):
                continue
            resolved[key] = list(items)
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    resolved[key][i], refused_item = self.resolve_locations(
                        item, kinds, f"{path}.{key}[{i}]"
                    )
                    refused = refused or refused_item
        return resolved, refused

    def resolve_locations(
        self, values: dict[str, Any], kinds: dict[str, str], path: str
    ) -> tuple[dict[str, Any], bool]:
        """Relative local paths made absolute; each location then checked for length (before any
        folder is made for it) and passed to the policy, if any."""
        resolved, refused = dict(values), False
        for key in kinds.keys() & resolved.keys():
            value = resolved[key]
            if not isinstance(value, str) or not value or isinstance(value, Deferred):
                continue  # a location read from a step's outputs is used as it comes
            # Relative local paths resolve against the routine's folder, not the working directory,
            # so a routine runs the same from wherever it is started; s3:// and other URIs are left
            # alone.
            if "://" not in value and not os.path.isabs(value):
                resolved[key] = value = str(self.folder / value)
            if (problem := location_problem(value)) is not None:
                self.report(f"{path}.{key}", problem)
                refused = True
                continue
            if self.policy is None:
                continue
            if (message := self.policy(Place(key, value, kinds[key]))) is not None:
                self.report(f"{path}.{key}", message)
                refused = True
        return resolved, refused

    def check_places(self, declared: Callable[[], Any], path: str, reported: set[str]) -> bool:
        """The location policy applied to what the executor declares it will use besides its typed
        locations (``Executor.places``/``task_places``); True if any was refused. Without a policy
        nothing is asked. An executor that cannot say (its params are malformed) is refused."""
        if self.policy is None:
            return False
        try:
            places = list(declared())
        except Exception as exc:
            # When the schema already reported these params, the executor's failure to read them is
            # its consequence, not news; the place is still refused.
            if not reported:
                self.report(path, f"cannot tell which locations this uses ({type(exc).__name__}: "
                                  f"{exc}), so a routine from an event may not run it")
            return True
        refused = False
        for place in places:
            if (message := self.policy(place)) is not None:
                where = f"{path}.{place.key}" + (" (default)" if place.derived else "")
                self.report(where, message)
                refused = True
        return refused

    def check_names_and_dependencies(
        self, steps: list[StepSpec | None], entries: list[tuple[str, dict[str, Any]]]
    ) -> None:
        seen: dict[str, str] = {}
        for path, entry in entries:
            name = _step_name(entry, path)
            if name in seen:
                self.report(
                    f"{path}.name",
                    f"step name {name!r} is already used at {seen[name]}; "
                    "give each entry a unique name",
                )
            # The first entry keeps the name: later duplicates point back at it.
            seen.setdefault(name, path)
        graph: dict[str, list[str]] = {}
        for path, entry in entries:
            name = _step_name(entry, path)
            depends_on = _dependencies(entry)
            for i, dep in depends_on:
                if dep not in seen:
                    self.report(f"{path}.depends_on[{i}]", unknown_message("step", dep, list(seen)))
                elif dep == name:
                    self.report(f"{path}.depends_on[{i}]", f"step {name!r} cannot depend on itself")
            # Unknown and self dependencies are reported above; left out of the graph, a
            # self-dependency is not reported a second time as a one-step cycle.
            graph[name] = [d for _, d in depends_on if d in seen and d != name]
        cycle = find_cycle(graph)
        if cycle:
            self.report(
                f"{seen[cycle[0]]}.depends_on",
                "dependency cycle: " + " -> ".join(cycle) + "; remove one of these depends_on",
            )


def _memo_key(raw: Any) -> tuple[str, str] | None:
    """A task entry as the memo key of :meth:`_Loader.task_calls`: a name, or an object as
    canonical JSON (which keeps ``1``, ``1.0`` and ``true`` apart). None: never memoized (a
    ``${`` reference, a value of another type, or one JSON cannot write)."""
    if isinstance(raw, str):
        return None if "${" in raw else ("name", raw)
    if not isinstance(raw, dict):
        return None
    try:
        text = json.dumps(raw, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return None if "${" in text else ("object", text)


def _step_name(entry: dict[str, Any], path: str) -> str:
    """The entry's step name; a name of the wrong type (the schema said so) stands as its path."""
    name = entry.get("name") or entry.get("executor", path)
    return name if isinstance(name, str) else path


def _dependencies(entry: dict[str, Any]) -> list[tuple[int, str]]:
    """``(index, step)`` of ``depends_on``; a non-string (the schema said so) adds no edge."""
    depends_on = entry.get("depends_on")
    if not isinstance(depends_on, list):
        return []
    return [(i, d) for i, d in enumerate(depends_on) if isinstance(d, str)]


def _deeper_checks(check: Any, reported: set[str], prefix: str) -> list[tuple[str, str]]:
    """An executor's own checks, run even when the schema found problems (so all are reported at
    once); they may then meet values of the wrong type: a check that breaks on them, or repeats a
    problem the schema already reported, adds nothing."""
    try:
        found = list(check())
    except Exception:
        return []
    return [
        (key, message)
        for key, message in found
        if not any(r == f"{prefix}.{key}" or r.startswith(f"{prefix}.{key}.") for r in reported)
    ]


def _under(path: str, broken: list[str]) -> bool:
    # Prefix plus separator: executors[1] must not cover executors[10].
    return any(path == b or path.startswith(b + ".") or path.startswith(b + "[") for b in broken)


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a list of names (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        # 1: on the current path (meeting it again closes a cycle); 2: fully explored, no cycle
        # through it.
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
    except (ValueError, RecursionError):  # not JSON, nested too deep, or an integer too long
        shown = (
            "****"
            if SECRET_NAME.search(key)
            else f"{value[:40]!r}{'...' if len(value) > 40 else ''}"
        )
        raise UserError(f"--param {key}: the routine's default is not a string, so give a JSON "
                        f"value (got {shown})") from None


def parse_param_overrides(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings from the command line."""
    result: dict[str, str] = {}
    for pair in pairs:
        # Split at the first "=" only: values (a query, a base64 token) may hold more.
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param {pair!r}: expected KEY=VALUE")
        result[key.strip()] = value
    return result
