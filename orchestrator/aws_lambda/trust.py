"""What a routine that arrives in a Lambda event (untrusted) may name: env vars, code, local paths.

See :mod:`orchestrator.aws_lambda` for the rules; they are enforced as a location policy while the
routine is validated, so nothing outside them is even read. The policy names no executor: each
declares its locations through the executor contract (annotations, ``Executor.places``).
"""
from __future__ import annotations

import ast
import os
from typing import Mapping, Sequence

from ..errors import ENV_UNSET, Problem, UserError
from ..executor import Place
from ..routine.load import LocationPolicy

ALLOWLIST_ENV = "ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST"
ENV_ALLOWLIST_ENV = "ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST"
PATH_ALLOWLIST_ENV = "ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST"
DEFAULT_PATH_ALLOWLIST = "/tmp/"
MAX_CODE_BYTES = 16 * 1024 * 1024  # a bigger file is not parsed: none of its functions is callable


class InvalidEvent(UserError):
    """The event, its routine or the configuration is wrong;
    nothing ran. The message is one line."""


def allowlist(env: Mapping[str, str] = os.environ) -> list[str]:
    """Where untrusted routines may name code: ``$ORCHESTRATOR_LAMBDA_CODE_ALLOWLIST``."""
    return _prefixes(ALLOWLIST_ENV, env.get(ALLOWLIST_ENV, ""))


def path_allowlist(env: Mapping[str, str] = os.environ) -> list[str]:
    """Where untrusted routines may name local data: ``$ORCHESTRATOR_LAMBDA_PATH_ALLOWLIST``,
    ``/tmp/`` if unset."""
    return _prefixes(PATH_ALLOWLIST_ENV, env.get(PATH_ALLOWLIST_ENV, DEFAULT_PATH_ALLOWLIST))


def _prefixes(name: str, text: str) -> list[str]:
    prefixes = [p.strip() for p in text.split(",") if p.strip()]
    relative = [p for p in prefixes if not os.path.isabs(p)]
    if relative:
        raise InvalidEvent(f"{name}: prefixes must be absolute paths, got {', '.join(relative)}")
    # Real paths, because the paths they are compared with are resolved too: a symlinked prefix
    # (/tmp is /private/tmp on macOS) would otherwise admit nothing.
    return [os.path.realpath(p) for p in prefixes]


def env_allowlist(env: Mapping[str, str] = os.environ) -> list[str]:
    """The environment variables untrusted routines may read:
    ``$ORCHESTRATOR_LAMBDA_ENV_ALLOWLIST``."""
    return sorted({n.strip() for n in env.get(ENV_ALLOWLIST_ENV, "").split(",") if n.strip()})


def visible_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What ``${env.X}`` sees in an untrusted routine: only the allowlisted
    variables that are set."""
    return {name: env[name] for name in env_allowlist(env) if name in env}


def problem_text(problem: Problem, trusted: bool, readable: list[str]) -> str:
    message = problem.message
    unset = not trusted and problem.code == ENV_UNSET
    # visible_env hides every variable not allowlisted, so the loader reports it as unset; say why
    # instead, or the user would go looking for a variable that is in fact set. An allowlisted name
    # that really is unset keeps the loader's message.
    if unset and problem.subject not in readable:
        message = (
            f"environment variable {problem.subject} is not in {ENV_ALLOWLIST_ENV}, "
            f"so routines from events cannot read it (allowed: {', '.join(readable) or 'none'})"
        )
    return f"{problem.path}: {message}" if problem.path else message


def allowed(path: str, prefixes: list[str]) -> bool:
    # file:// was stripped by the caller and s3:// never gets here: any other scheme is refused.
    if "://" in path:
        return False
    # Symlinks resolved first: a link under an allowed prefix is judged by where it points.
    real = os.path.realpath(path)
    # Prefixes end at a path separator: /tmp/data must not admit /tmp/database.
    return any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes)


def _nested(a: str, b: str) -> bool:
    """Real paths ``a`` and ``b`` are the same folder or one lies inside the other."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def path_refusal(value: str, prefixes: list[str], home: str,
                 code_prefixes: Sequence[str] = ()) -> str | None:
    """Why an untrusted routine may not use the data location ``value``, or None (``s3://`` is
    always fine). Data never overlaps a code location: what a routine stages, writes or hands to a
    function there could later be imported as code."""
    if value.startswith("s3://"):
        return None
    local = value.removeprefix("file://")
    if not allowed(local, prefixes):
        return f"{value!r} is outside {PATH_ALLOWLIST_ENV}"
    real = os.path.realpath(local)
    # Both directions: data inside the home could overwrite the run store or executor state, and a
    # folder that contains the home (staging moves or deletes what its parent_directory holds) could
    # take them with it.
    if _nested(real, home):
        return f"{value!r} overlaps the orchestrator home {home} (run records and state)"
    for code in code_prefixes:
        if _nested(real, code):
            return (f"{value!r} overlaps {code} in {ALLOWLIST_ENV}: a routine from an event may "
                    "not put or read data where code is imported from")
    return None


def code_refusal(place: Place, prefixes: list[str], note: str) -> str | None:
    """Why an untrusted routine may not run ``place``'s code, or None: the file must lie under the
    code allowlist and define each function it will call itself (checked again when imported)."""
    value = place.value
    # "file.py:function" form: the colon is looked for in the last path segment only, so a folder
    # name with a colon is not split.
    file = value.rpartition(":")[0] if ":" in value.rsplit("/", 1)[-1] else value
    if not allowed(file, prefixes):
        return f"{value!r} is outside {ALLOWLIST_ENV} ({note})"
    if not place.functions or not os.path.isfile(file):
        return None  # a missing file is the executor's own check to report
    own = own_functions(file)
    # A function the file imports (from shutil import rmtree) runs someone else's code with the
    # routine's arguments, though the file itself lies in the allowlist.
    foreign = [name for name in place.functions if own is None or name not in own]
    if not foreign:
        return None
    names = ", ".join(f"{name}()" for name in foreign)
    why = ("its top level cannot be read statically: globals(), exec, setattr, import *, 16+ MiB"
           if own is None else "it imports, assigns or redefines them")
    return (f"{file} does not itself define {names} ({why}); a routine from an event may call only "
            "functions the allowlisted file defines")


def own_functions(file: str) -> set[str] | None:
    """Top-level functions ``file`` defines with ``def`` and binds in no other way; None when the
    module may bind names dynamically. Read with ``ast``, never imported."""
    try:
        with open(file, "rb") as handle:
            # One byte over the limit tells a file that is too big, without reading all of it.
            source = handle.read(MAX_CODE_BYTES + 1)
        if len(source) > MAX_CODE_BYTES:
            return None
        tree = ast.parse(source, filename=file)
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        # Hostile source can make the parser itself fail (nesting deep enough for RecursionError
        # or MemoryError): a file that cannot be read statically is vouched for by nothing, so
        # none of its functions may run.
        return None
    defs: set[str] = set()
    others: set[str] = set()
    try:
        for node in tree.body:
            _bindings(node, defs, others)
    except _Dynamic:
        return None
    # A name bound both by def and in another way (assigned, imported, a class) may be rebound to
    # anything by the time the module is imported.
    return defs - others


class _Dynamic(Exception):
    pass


# Calls through which a module can bind top-level names that ast cannot see.
_DYNAMIC_CALLS = {"globals", "exec", "eval", "setattr", "vars", "__import__", "compile"}


def _bindings(node: ast.AST, defs: set[str], others: set[str]) -> None:
    """Names a module-level statement binds, split into ``def`` and everything else; function and
    class bodies are not module level (their decorators, defaults and bases are)."""
    outer: list[ast.AST]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        defs.add(node.name)
        # The body runs only when called; decorators and defaults are evaluated at import, at module
        # level.
        outer = [*node.decorator_list, *node.args.defaults, *filter(None, node.args.kw_defaults)]
    elif isinstance(node, ast.ClassDef):
        others.add(node.name)
        outer = [*node.decorator_list, *node.bases, *node.keywords]
    elif isinstance(node, ast.Lambda):
        # Same for a lambda: only its defaults are evaluated where it appears.
        outer = [*node.args.defaults, *filter(None, node.args.kw_defaults)]
    else:
        outer = list(ast.iter_child_nodes(node))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                raise _Dynamic
            # "import a.b" binds "a".
            others.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        # Reached for assignments anywhere at module level, also inside if/try/for/with blocks and
        # walrus expressions in decorators or defaults.
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            others.add(node.id)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            others.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            others.add(node.rest)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in _DYNAMIC_CALLS:
            raise _Dynamic
    for child in outer:
        _bindings(child, defs, others)


def untrusted_policy(code_prefixes: list[str], data_prefixes: list[str],
                     home: str) -> LocationPolicy:
    """The location policy for routines from events, applied while they are validated, so that no
    executor check reads a file the routine may not name (validation must not probe the disk).

    Executors declare what their typed params do not show (``Executor.places``): the default
    archive folder, paths among a function's kwargs, the functions called from code."""
    code_note = "code allowlist: " + (", ".join(code_prefixes) or "empty, so no code may be named")
    path_note = "path allowlist: " + (", ".join(data_prefixes)
                                      or "empty, so no local path may be named")

    def refuse(place: Place) -> str | None:
        if place.kind == "code":
            return code_refusal(place, code_prefixes, code_note)
        why = path_refusal(place.value, data_prefixes, home, code_prefixes)
        # Only "outside the allowlist" needs the allowlist spelled out; the other refusals name
        # their reason (the home, a code prefix) themselves.
        outside = why is not None and why.endswith(f"outside {PATH_ALLOWLIST_ENV}")
        return f"{why} ({path_note})" if outside else why

    return refuse
