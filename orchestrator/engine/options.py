"""How to run a routine, as the user asked: one value built where the input is read.

The CLI (its flags), the Python API (its arguments) and the Lambda adapter (its event) each build a
``RunOptions`` once; the run store's ``TrackedRun`` and the engine's ``Run`` take it whole instead
of each forwarding a growing list of keyword parameters.

Both classes are frozen values written by hand rather than frozen dataclasses: making the two
dataclasses cost 12 M instructions (about 3 ms) at every start-up, against a 60 ms target for a
whole one-task run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .plan import Plan


class _Frozen:
    """Slots set once in ``__init__``; equal when every slot is equal."""

    __slots__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: build a new one "
                             f"(RunOptions.replace({name}=...))")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and type(other) is type(self) \
            and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # holds dicts, like a frozen dataclass would

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Resume(_Frozen):
    """Resuming run ``run_id``: each task that already succeeded (``(step position, task
    index)``, in that run or one it resumed) mapped to the id of the run it succeeded in."""

    __slots__ = ("run_id", "done")
    run_id: str
    done: Mapping[tuple[int, int], str]

    def __init__(self, run_id: str, done: Mapping[tuple[int, int], str] | None = None) -> None:
        object.__setattr__(self, "run_id", run_id)
        object.__setattr__(self, "done", dict(done or {}))


class RunOptions(_Frozen):
    """``params``: overrides as given; ``run_id``: None for a new one (a detached run's child is
    told its id); ``max_parallel``: independent steps at once; ``only``/``start``: ``--only`` and
    ``--from``; ``allow_concurrent``: claim the routine even while another run of it is going;
    ``track``: record the run in the run store (the Python API may turn it off); ``resume``."""

    __slots__ = ("params", "run_id", "max_parallel", "only", "start", "allow_concurrent", "track",
                 "resume")
    params: Mapping[str, Any]
    run_id: str | None
    max_parallel: int
    only: tuple[str, ...]
    start: str | None
    allow_concurrent: bool
    track: bool
    resume: Resume | None

    def __init__(self, *, params: Mapping[str, Any] | None = None, run_id: str | None = None,
                 max_parallel: int = 4, only: tuple[str, ...] = (), start: str | None = None,
                 allow_concurrent: bool = False, track: bool = True,
                 resume: Resume | None = None) -> None:
        given = (dict(params or {}), run_id, max_parallel, tuple(only), start, allow_concurrent,
                 track, resume)
        for name, value in zip(self.__slots__, given):
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> RunOptions:
        return RunOptions(**{**dict(zip(self.__slots__, self._values())), **changes})

    @property
    def resumed_from(self) -> str | None:
        return self.resume.run_id if self.resume else None

    @property
    def done(self) -> Mapping[tuple[int, int], str]:
        return self.resume.done if self.resume else {}

    def excluded(self, plan: Plan) -> dict[str, str]:
        """Step name -> why ``--only``/``--from`` leave it out; raises ``UserError`` for a step
        the plan does not have (so call it before anything starts)."""
        if not self.only and not self.start:
            return {}
        from ..selection import excluded_steps

        return excluded_steps(plan, self.only, self.start)

    def resuming(self, resume: Resume) -> RunOptions:
        return self.replace(resume=resume)
