"""Set up ``logging`` when it is first imported, instead of importing it to be ready.

Importing ``logging`` costs a run about 21 M instructions (~5 ms; with ``traceback`` and
``string``), and most runs never log: a no-op or quiet task does not. Handlers are still wanted
for whatever logs: the run's log capture, the terminal's, a broken plugin's warning. So each of
those is registered with :func:`when_imported` and installed the moment anything imports
``logging`` (a task's ``context.logger``, a plugin, a library a task imports halfway through a
run), before the importer gets the module back: no record can be made before they are in place,
which is what keeps logs reaching the run store and the terminal exactly as if they had been
installed up front.
"""
from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any, Callable, Sequence

Callback = Callable[[ModuleType], None]

_pending: list[Callback] = []
# Registration happens on the main thread, but the import that fires the callbacks may come from
# any task's thread.
_lock = threading.Lock()


def when_imported(callback: Callback) -> Callable[[], None]:
    """Call ``callback(logging)`` now if ``logging`` is imported, else right after its first
    import. Returns a function that forgets the callback if it has not run yet."""
    if "logging" not in sys.modules:
        with _lock:
            # Checked again under the lock: another thread may have imported it meanwhile, and
            # then nothing would ever call the callback.
            if "logging" not in sys.modules:
                _pending.append(callback)
                if _Watch not in sys.meta_path:
                    sys.meta_path.insert(0, _Watch)  # type: ignore[arg-type]
                return lambda: _forget(callback)
    # Also when another thread is still executing the module: the import waits for it to finish.
    import logging

    callback(logging)
    return _nothing


def _forget(callback: Callback) -> None:
    with _lock:
        if callback in _pending:
            _pending.remove(callback)
        if not _pending and _Watch in sys.meta_path:
            sys.meta_path.remove(_Watch)  # type: ignore[arg-type]


def _nothing() -> None:
    pass


def _fire(module: ModuleType) -> None:
    with _lock:
        callbacks = list(_pending)
        _pending.clear()
        # Put back by a registration that came while the module was being executed.
        if _Watch in sys.meta_path:
            sys.meta_path.remove(_Watch)  # type: ignore[arg-type]
    # In registration order, as they would have run had ``logging`` been imported up front.
    for callback in callbacks:
        try:
            callback(module)
        except Exception as exc:
            # Raised from here, it would fail the import of ``logging`` for whoever imported it
            # (a task, a library), and leave the module half set up for the rest of the process.
            print(f"orchestrator: could not set up logging: {exc!r}", file=sys.stderr)


class _Watch:
    """A meta path finder that only ever answers for ``logging``: it finds the real module
    through the finders after it and wraps its loader to call the pending callbacks once the
    module is executed. Every other name costs one call that returns None."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        with _lock:
            if _Watch in sys.meta_path:
                sys.meta_path.remove(_Watch)  # type: ignore[arg-type]
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


class _Loader:
    """The real loader of ``logging``, then the callbacks: the module is complete (its classes
    exist, ``getLogger`` works) and is in ``sys.modules`` by then."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps the real loader, as if nothing had come between: ``linecache`` and
        # ``importlib.reload`` ask it for the source.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _fire(module)
