"""Find executors: a pluggy PluginManager fed lazily by the ``orchestrator`` entry-point group.

Built-in executors are plugins like any third-party one; the core imports none by name. A plugin
module is imported only when a routine names one of its executors (known from the cached
:mod:`plugin index <orchestrator.plugin_index>`), or when everything is listed (``plugins``,
``schema``, ``doctor``). A plugin that fails to import is reported and set aside: routines that do
not use it still run. Set ``ORCHESTRATOR_BLOCK_PLUGINS=name1,name2`` to skip entry points by name.
"""
from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UserError
from .executor import Executor
from .plugin_index import GROUP, Claims, EntryPoint, PluginIndex, Row, claims_of
from .routine.introspect import signature_schema

ENTRY_POINT_GROUP = GROUP
BLOCK_VARIABLE = "ORCHESTRATOR_BLOCK_PLUGINS"
# The logger a broken plugin is reported on (the CLI prints it as one line: cli.log_setup).
PLUGINS_LOGGER = "orchestrator.plugins"


class ExecutorInfo:
    """One registered executor and where it came from.

    A plain class: a dataclass costs about a millisecond of start-up to make.
    """

    def __init__(self, cls: type[Executor], name: str, plugin: str, distribution: str,
                 version: str) -> None:
        self.cls, self.name, self.plugin = cls, name, plugin
        self.distribution, self.version = distribution, version

    def _key(self) -> tuple[Any, ...]:
        return (self.cls, self.name, self.plugin, self.distribution, self.version)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExecutorInfo) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"ExecutorInfo({self.name!r}, {self.class_name}, {self.plugin!r}, {self.origin!r})"

    @property
    def class_name(self) -> str:
        return self.cls.__name__

    @property
    def tasks(self) -> list[str]:
        return list(self.cls.tasks())

    # Cached: deriving it reads the constructor's signature and type hints, and validation asks
    # for it once per step that uses the executor.
    @cached_property
    def params_schema(self) -> dict[str, Any]:
        return self.cls.params_schema or signature_schema(self.cls.__init__)

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or self.plugin


class BrokenPlugin(Row):
    """An installed plugin that could not be loaded, and why (a named tuple: see ``Row``)."""

    __slots__ = ()
    _fields = ("name", "distribution", "version", "reason")

    def __new__(cls, name: str, distribution: str, version: str, reason: str) -> BrokenPlugin:
        return tuple.__new__(cls, (name, distribution, version, reason))

    @property
    def name(self) -> str:
        return self[0]  # type: ignore[no-any-return]

    @property
    def distribution(self) -> str:
        return self[1]  # type: ignore[no-any-return]

    @property
    def version(self) -> str:
        return self[2]  # type: ignore[no-any-return]

    @property
    def reason(self) -> str:
        return self[3]  # type: ignore[no-any-return]

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or self.name

    def warning(self) -> str:
        # The names already blocked are kept in the suggested value: copied as it is, it must not
        # unblock another broken plugin.
        blocked = [*blocked_plugins(), self.name]
        return (f"warning: plugin {self.name!r} ({self.origin}) failed to load: {self.reason}; "
                f"routines that do not use it still run; to skip it, set "
                f"{BLOCK_VARIABLE}={','.join(blocked)}")


class UnknownExecutor(UserError):
    pass


def blocked_plugins() -> list[str]:
    return [name.strip() for name in os.environ.get(BLOCK_VARIABLE, "").split(",") if name.strip()]


class Registry:
    """Executors by short name and by class name, importing plugin modules only when needed."""

    def __init__(self, load_entrypoints: bool = True, index: PluginIndex | None = None) -> None:
        # PROJECT is also the name in ``hookimpl``'s marker: a plugin's hooks are found only if
        # both say the same.
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._blocked = blocked_plugins() if load_entrypoints else []
        # Blocked in pluggy too, not only skipped in the index: registering a plugin by hand
        # under that name then does nothing either.
        for name in self._blocked:
            self._pm.set_blocked(name)
        self._use_entrypoints = load_entrypoints
        self._index = index
        self._pending: dict[str, EntryPoint] | None = None
        self._origins: dict[str, tuple[str, str]] = {}
        self._broken: dict[str, tuple[BrokenPlugin, Claims | None]] = {}
        # Re-entrant: resolve() holds it and may call load_all(), which takes it again.
        self._lock = threading.RLock()
        self._cache: tuple[dict[str, ExecutorInfo], dict[str, list[ExecutorInfo]]] | None = None

    @property
    def pm(self) -> pluggy.PluginManager:
        """The plugin manager, every installed plugin loaded (raw hook callers want them all)."""
        self.load_all()
        return self._pm

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module directly (tests, embedding)."""
        with self._lock:
            self._pm.register(plugin, name=name)
            self._cache = None

    def unregister(self, plugin: object) -> None:
        with self._lock:
            self._pm.unregister(plugin)
            self._cache = None

    def _entry_points(self) -> dict[str, EntryPoint]:
        """Installed entry points not loaded yet (read from the index on first use)."""
        if self._pending is None:
            if self._index is None:
                use = self._use_entrypoints
                self._index = PluginIndex.load(_cache_folder()) if use else PluginIndex.empty()
            eps = self._index.entry_points
            self._pending = {ep.name: ep for ep in eps if ep.name not in self._blocked}
        return self._pending

    @property
    def index(self) -> PluginIndex:
        self._entry_points()
        assert self._index is not None
        return self._index

    def _load(self, ep: EntryPoint) -> None:
        """Import and register one plugin; one that fails is recorded as broken, not raised."""
        # Taken off the pending list before the import: a plugin that fails is tried once per
        # process, not again at every lookup that falls back to loading everything.
        self._entry_points().pop(ep.name, None)
        # What it claimed last time it loaded: if it fails now, a routine naming one of its
        # executors is told which broken plugin provides it (_not_found).
        known = self.index.claims(ep)
        plugin: object = None
        try:
            plugin = ep.load()
            if self._pm.is_registered(plugin):  # registered by hand under another name
                return
            self._pm.register(plugin, name=ep.name)
            claims = self._validate(plugin)
        except (Exception, SystemExit) as exc:  # whatever a plugin raises must not break the others
            if plugin is not None and self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._set_broken(ep, f"{type(exc).__name__}: {exc}", known)
            return
        self._origins[ep.name] = (ep.distribution, ep.version)
        self.index.learn(ep, plugin, claims)
        self._cache = None

    def _validate(self, plugin: object) -> Claims:
        """Its hooks must match the specs, and ``register_executors`` return executor classes."""
        callers = self._pm.get_hookcallers(plugin) or []
        # pluggy accepts a hook nobody specified until check_pending(), which would then fail
        # every lookup; refused here, the mistake breaks this plugin only.
        for caller in callers:
            if caller.spec is None:
                raise pluggy.PluginValidationError(plugin, f"unknown hook {caller.name!r}")
        classes: list[type] = []
        for impl in self._pm.hook.register_executors.get_hookimpls():
            if impl.plugin is plugin:
                classes.extend(_executor_classes(impl))
        return claims_of(classes, [caller.name for caller in callers])

    def _set_broken(self, ep: EntryPoint, reason: str, claims: Claims | None) -> None:
        broken = BrokenPlugin(ep.name, ep.distribution, ep.version, reason)
        self._broken[ep.name] = (broken, claims)
        # Imported here, not with this module: a run whose plugins all load never imports
        # ``logging`` unless a task logs (orchestrator.lazy_logging).
        import logging

        logging.getLogger(PLUGINS_LOGGER).warning(broken.warning())

    def load_all(self) -> None:
        """Import every installed plugin (for listings and raw hook calls)."""
        with self._lock:
            for ep in list(self._entry_points().values()):
                self._load(ep)
            self.index.save()

    def _load_candidates(self, wanted: str) -> None:
        """Import the plugins that claim ``wanted`` (an executor or hook name) or may: their claims
        are unknown (never imported here, or changed since)."""
        for ep in list(self._entry_points().values()):
            claims = self.index.claims(ep)
            if claims is None or wanted in claims.names() or wanted in claims.hooks:
                self._load(ep)
        # What the imports taught is written at once, so the next process imports only what it
        # needs.
        self.index.save()

    def broken(self) -> list[BrokenPlugin]:
        """Plugins that failed to load so far (all of them after :meth:`load_all`)."""
        return [broken for broken, _ in self._broken.values()]

    def _build(self) -> tuple[dict[str, ExecutorInfo], dict[str, list[ExecutorInfo]]]:
        if self._cache is not None:
            return self._cache
        self._pm.check_pending()
        by_name: dict[str, ExecutorInfo] = {}
        conflicts: dict[str, list[ExecutorInfo]] = {}
        for impl in reversed(self._pm.hook.register_executors.get_hookimpls()):
            dist, version = self._origins.get(impl.plugin_name, ("", ""))
            for cls in _executor_classes(impl):
                info = ExecutorInfo(cls, cls.registry_name(), impl.plugin_name, dist, version)
                other = by_name.get(info.name)
                if other is not None and other.cls is not cls:
                    conflicts.setdefault(info.name, [other]).append(info)
                by_name.setdefault(info.name, info)
        self._cache = (by_name, conflicts)
        return self._cache

    def executors(self) -> list[ExecutorInfo]:
        """Every executor of every installed plugin (imports them all)."""
        self.load_all()
        return sorted(self._build()[0].values(), key=lambda info: info.name)

    def conflicts(self) -> dict[str, list[ExecutorInfo]]:
        self.load_all()
        return self._build()[1]

    def resolve(self, ref: str) -> ExecutorInfo:
        """An executor by short name or class name, importing only the plugins that may have it.

        Errors name conflicting plugins, a broken plugin that provides ``ref``, or close matches.
        """
        with self._lock:
            self._load_candidates(ref)
            info = self._find(ref)
            if info is None and self._entry_points():  # the cache did not know it: look everywhere
                self.load_all()
                info = self._find(ref)
            if info is None:
                raise self._not_found(ref)
            return info

    def _find(self, ref: str) -> ExecutorInfo | None:
        by_name, conflicts = self._build()
        if ref in conflicts:
            owners = " and ".join(f"{i.class_name} from {i.origin}" for i in conflicts[ref])
            raise PluginError(
                f"executor name {ref!r} is claimed by {owners}; uninstall or block one")
        matches = (info for info in by_name.values() if ref in (info.name, info.class_name))
        return next(matches, None)

    def _not_found(self, ref: str) -> UserError:
        for broken, claims in self._broken.values():
            if ref == broken.name or (claims is not None and ref in claims.names()):
                return PluginError(
                    f"executor {ref!r} comes from plugin {broken.name!r} ({broken.origin}), "
                    f"which failed to load: {broken.reason}; "
                    f"repair or reinstall {broken.distribution or 'it'}")
        message = unknown_message("executor", ref, self.known_names())
        suspects = [f"{b.name!r} ({b.origin}: {b.reason})" for b, _ in self._broken.values()]
        if suspects:
            message += f"; it may come from a plugin that failed to load: {', '.join(suspects)}"
        return UnknownExecutor(message)

    def known_names(self) -> list[str]:
        names: set[str] = set()
        for info in self._build()[0].values():
            names.update((info.name, info.class_name))
        return sorted(names)

    def hook(self, name: str) -> Any:
        """The caller of hook ``name``, with the plugins that implement it loaded (and only those,
        as far as the cache knows): ``registry.hook("run_store")(url=url)``."""
        with self._lock:
            self._load_candidates(name)
        return getattr(self._pm.hook, name)

    def store_for(self, url: str) -> Any:
        """The run store a plugin provides for ``url`` (``run_store`` hook), or None."""
        return self.hook("run_store")(url=url)


def _executor_classes(impl: Any) -> list[type[Executor]]:
    # One plugin's implementation called directly rather than through the hook, which would
    # merge every plugin's classes: each class must be traced to the plugin that returned it.
    classes = list(impl.function() or ())
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise PluginError(f"plugin {impl.plugin_name!r} returned {cls!r}, not an Executor")
    return classes


def _cache_folder() -> Any:
    """Where the plugin index is cached. Reading it creates nothing (a command refused as bad input
    leaves no home behind); the index saves itself only into a home that exists."""
    from .home import home_path

    try:
        return home_path() / "cache"
    except RuntimeError:  # no home folder to be found: slower, not wrong
        return None


def unknown_message(kind: str, ref: str, known: list[str]) -> str:
    import difflib  # only a mistake pays for it

    close = difflib.get_close_matches(ref, known, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {' or '.join(map(repr, close))}?"
    else:
        hint = f"known: {', '.join(known) or 'none'}"
    return f"unknown {kind} {ref!r}; {hint}"
