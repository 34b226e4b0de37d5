"""Find executors: a pluggy PluginManager fed by the ``orchestrator`` entry-point group.

Built-in executors are plugins like any third-party one; the core imports none by name.
Set ``ORCHESTRATOR_BLOCK_PLUGINS=name1,name2`` to skip entry points by name.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from functools import cached_property
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UserError
from .executor import Executor
from .routine.introspect import signature_schema

ENTRY_POINT_GROUP = "orchestrator"


@dataclasses.dataclass(frozen=True)
class ExecutorInfo:
    """One registered executor and where it came from."""

    cls: type[Executor]
    name: str
    plugin: str
    distribution: str
    version: str

    @property
    def class_name(self) -> str:
        return self.cls.__name__

    @property
    def tasks(self) -> list[str]:
        return list(self.cls.tasks())

    @cached_property
    def params_schema(self) -> dict[str, Any]:
        return self.cls.params_schema or signature_schema(self.cls.__init__)

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or self.plugin


class UnknownExecutor(UserError):
    pass


class Registry:
    """Executors by short name and by class name."""

    def __init__(self, load_entrypoints: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if load_entrypoints:
            for name in filter(None, os.environ.get("ORCHESTRATOR_BLOCK_PLUGINS", "").split(",")):
                self.pm.set_blocked(name.strip())
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        self._cache: tuple[dict[str, ExecutorInfo], dict[str, list[ExecutorInfo]]] | None = None

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module directly (tests, embedding)."""
        self.pm.register(plugin, name=name)
        self._cache = None

    def unregister(self, plugin: object) -> None:
        self.pm.unregister(plugin)
        self._cache = None

    def _dists(self) -> dict[int, tuple[str, str]]:
        return {id(plugin): (dist.project_name, dist.version) for plugin, dist in self.pm.list_plugin_distinfo()}

    def _build(self) -> tuple[dict[str, ExecutorInfo], dict[str, list[ExecutorInfo]]]:
        if self._cache is not None:
            return self._cache
        self.pm.check_pending()
        dists = self._dists()
        by_name: dict[str, ExecutorInfo] = {}
        conflicts: dict[str, list[ExecutorInfo]] = {}
        for impl in reversed(self.pm.hook.register_executors.get_hookimpls()):
            dist, version = dists.get(id(impl.plugin), ("", ""))
            for cls in impl.function() or ():
                if not (isinstance(cls, type) and issubclass(cls, Executor)):
                    raise PluginError(f"plugin {impl.plugin_name!r} returned {cls!r}, not an Executor subclass")
                info = ExecutorInfo(cls, cls.registry_name(), impl.plugin_name, dist, version)
                other = by_name.get(info.name)
                if other is not None and other.cls is not cls:
                    conflicts.setdefault(info.name, [other]).append(info)
                by_name.setdefault(info.name, info)
        self._cache = (by_name, conflicts)
        return self._cache

    def executors(self) -> list[ExecutorInfo]:
        return sorted(self._build()[0].values(), key=lambda info: info.name)

    def conflicts(self) -> dict[str, list[ExecutorInfo]]:
        return self._build()[1]

    def resolve(self, ref: str) -> ExecutorInfo:
        """Find an executor by short name or class name; errors list close matches."""
        by_name, conflicts = self._build()
        matches = [info for info in by_name.values() if ref in (info.name, info.class_name)]
        if ref in conflicts:
            owners = " and ".join(f"{i.class_name} from {i.origin}" for i in conflicts[ref])
            raise PluginError(f"executor name {ref!r} is claimed by {owners}; uninstall or block one")
        if not matches:
            raise UnknownExecutor(unknown_message("executor", ref, self.known_names()))
        return matches[0]

    def known_names(self) -> list[str]:
        names = set()
        for info in self._build()[0].values():
            names.update((info.name, info.class_name))
        return sorted(names)


def unknown_message(kind: str, ref: str, known: list[str]) -> str:
    close = difflib.get_close_matches(ref, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"known: {', '.join(known) or 'none'}"
    return f"unknown {kind} {ref!r}; {hint}"
