"""Which plugins are installed, known without importing them: the entry-point index, cached.

Reading entry points through ``importlib.metadata`` costs more than the rest of a small run, and
importing every plugin costs more still. So the index (entry point, distribution, version) is
cached in the orchestrator home, keyed by what a ``pip install`` changes: the ``sys.path``
folders and the distribution metadata in them. Beside it, each plugin's *claims* (the executor
names and hooks it registered when last imported) let a routine import only the plugins it
names. A missing, stale or wrong cache is never trusted blindly: the registry falls back to
importing plugins and corrects the cache with what it learns.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Iterable

GROUP = "orchestrator"
CACHE_VERSION = 1
# A folder changed this recently may change again within its clock's granularity: its mtime
# is not trusted, and its metadata listing is compared instead next time.
MTIME_SETTLE_NS = 2_000_000_000
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


class Row(tuple[Any, ...]):
    """A named tuple written out by hand. Neither a dataclass (about a millisecond of start-up
    to make) nor a ``typing.NamedTuple``, which compiles its ``__new__`` from source when the
    class is made (about 0.5 M instructions each, in every process): these are made at every
    start-up. Behaves as a NamedTuple does: a tuple, with ``_fields``, ``_asdict`` and the
    same repr."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self))

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self))
        return f"{type(self).__name__}({values})"

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickled as the plain tuple, as namedtuple
        return tuple(self)


class EntryPoint(Row):
    """One ``orchestrator`` entry point: ``name = module[:attr]`` from a distribution."""

    __slots__ = ()
    _fields = ("name", "value", "distribution", "version")

    def __new__(cls, name: str, value: str, distribution: str, version: str) -> EntryPoint:
        return tuple.__new__(cls, (name, value, distribution, version))

    @property
    def name(self) -> str:
        return self[0]  # type: ignore[no-any-return]

    @property
    def value(self) -> str:
        return self[1]  # type: ignore[no-any-return]

    @property
    def distribution(self) -> str:
        return self[2]  # type: ignore[no-any-return]

    @property
    def version(self) -> str:
        return self[3]  # type: ignore[no-any-return]

    def load(self) -> object:
        module_name, _, attr = self.value.partition(":")
        loaded: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attr.strip().split(".")):
            loaded = getattr(loaded, part)
        return loaded

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or self.name


class Claims(Row):
    """What a plugin registered when it was last imported."""

    __slots__ = ()
    _fields = ("executors", "hooks")

    def __new__(cls, executors: tuple[tuple[str, str], ...], hooks: tuple[str, ...]) -> Claims:
        return tuple.__new__(cls, (executors, hooks))

    @property
    def executors(self) -> tuple[tuple[str, str], ...]:
        """(registry name, class name) of each executor."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def hooks(self) -> tuple[str, ...]:
        return self[1]  # type: ignore[no-any-return]

    def names(self) -> set[str]:
        return {name for pair in self.executors for name in pair}


class PluginIndex:
    """The installed entry points and what each plugin claimed when last imported."""

    def __init__(self, entry_points: list[EntryPoint],
                 claims: dict[str, dict[str, Any]] | None = None,
                 key: dict[str, Any] | None = None, cache_file: Path | None = None) -> None:
        self.entry_points = entry_points
        self._claims = claims or {}
        self._key = key
        self._cache_file = cache_file
        self._dirty = False
        self._checked: dict[str, Claims | None] = {}

    @classmethod
    def empty(cls) -> PluginIndex:
        return cls([])

    @classmethod
    def load(cls, cache_folder: Path | None) -> PluginIndex:
        """The cached index if the installed distributions did not change, else read afresh."""
        entries = _path_entries()
        cache_file = None if cache_folder is None else cache_folder / _cache_name(entries)
        cached = _read_json(cache_file)
        if cached and cached.get("version") == CACHE_VERSION and cached.get("path") == entries:
            try:
                index = cls._from_cache(cached, cache_file)
            except (KeyError, TypeError, ValueError, AttributeError):  # damaged: read afresh
                index = None
            if index is not None:
                return index
        # The key is taken before the entry points are read: an install meanwhile leaves the cache
        # stale (rebuilt next time), never wrong.
        key = _current_key(entries)
        index = cls(_read_entry_points(), None, _settle(key), cache_file)
        index._dirty = True
        return index

    @classmethod
    def _from_cache(cls, cached: dict[str, Any], cache_file: Path | None) -> PluginIndex | None:
        key, changed = _revalidate(cached["key"])
        if key is None:
            return None
        eps = [EntryPoint(**ep) for ep in cached["entry_points"]]
        claims = {name: dict(claim) for name, claim in cached["claims"].items()}
        index = cls(eps, claims, key, cache_file)
        index._dirty = changed
        return index

    def claims(self, ep: EntryPoint) -> Claims | None:
        """What ``ep`` claimed when last imported, or None if unknown or possibly out of date."""
        if ep.name not in self._checked:
            self._checked[ep.name] = self._check_claims(ep)
        return self._checked[ep.name]

    def _check_claims(self, ep: EntryPoint) -> Claims | None:
        known = self._claims.get(ep.name)
        try:
            if known is None or (known["value"], known["distribution"], known["version"]) != (
                    ep.value, ep.distribution, ep.version):
                return None
            # The same version but an edited module (an editable install, a plugin under
            # development) may register other executors now.
            if known["file"] is not None and _mtime(known["file"]) != known["mtime"]:
                return None
            executors = tuple((str(name), str(cls)) for name, cls in known["executors"])
            return Claims(executors, tuple(map(str, known["hooks"])))
        except (KeyError, TypeError, ValueError):  # damaged: unknown, so imported
            return None

    def learn(self, ep: EntryPoint, plugin: object, claims: Claims) -> None:
        """Remember what ``ep``'s plugin registered: later runs need not import it to know."""
        file = getattr(plugin, "__file__", None)
        entry = {"value": ep.value, "distribution": ep.distribution, "version": ep.version,
                 "file": file, "mtime": _mtime(file) if file else None,
                 "executors": [list(pair) for pair in claims.executors],
                 "hooks": list(claims.hooks)}
        # Only a change marks the index dirty: a run that learns nothing new writes no file.
        if self._claims.get(ep.name) != entry:
            self._claims[ep.name] = entry
            self._dirty = True
        self._checked[ep.name] = claims

    def save(self) -> None:
        """Write the cache if anything changed; a cache that cannot be written is only slower.

        The cache folder is made inside an existing orchestrator home, never the home itself: a
        command refused as bad input must leave nothing behind.
        """
        if not self._dirty or self._cache_file is None or self._key is None:
            return
        doc = {"version": CACHE_VERSION, "path": _path_entries(), "key": self._key,
               "entry_points": [ep._asdict() for ep in self.entry_points],
               "claims": self._claims}
        try:
            self._cache_file.parent.mkdir(exist_ok=True)  # the home must exist already
            # Written aside and renamed over: processes starting meanwhile read the old cache
            # or the new one, never half a file; the pid keeps two writers apart.
            temporary = self._cache_file.with_name(f"{self._cache_file.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(doc))
            os.replace(temporary, self._cache_file)
            self._dirty = False
        except OSError:
            pass


def _path_entries() -> list[str]:
    # "" (the working directory, for ``python -c``) made absolute: the same path string run from
    # two folders must not share a cache.
    return [os.path.abspath(entry or ".") for entry in sys.path]


def _cache_name(entries: list[str]) -> str:
    """One cache per interpreter and path: virtual environments sharing a home do not fight."""
    from .ids import sha256_hex

    seed = "\0".join([sys.executable, *entries]).encode()
    # SHA-256, which every run loads anyway (the routine's digest), rather than zlib's CRC-32:
    # importing zlib's extension module alone cost each start-up about 1 M instructions.
    return f"plugins-{sha256_hex(seed)[:8]}.json"


def _read_json(file: Path | None) -> dict[str, Any] | None:
    if file is None:
        return None
    try:
        doc = json.loads(file.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _metadata_listing(folder: str) -> dict[str, int | None] | None:
    """Distribution metadata in a ``sys.path`` folder, each with its mtime (None: not a folder)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    return {name: _mtime(os.path.join(folder, name))
            for name in names if name.endswith(_METADATA_SUFFIXES)}


def _current_key(entries: list[str]) -> dict[str, Any]:
    """What must stay the same for the cached index to hold.

    Per ``sys.path`` entry: its mtime (any install or uninstall in it changes it) and its listing of
    metadata folders (checked only when the mtime moved). Plus each ``.egg-info/entry_points.txt``:
    ``setup.py develop`` rewrites that file in place, which changes no folder's mtime.
    """
    folders = []
    watch: dict[str, int | None] = {}
    for entry in entries:
        listing = _metadata_listing(entry)
        folders.append([entry, _mtime(entry), listing])
        for name in listing or ():
            if name.endswith(".egg-info"):
                file = os.path.join(entry, name, "entry_points.txt")
                watch[file] = _mtime(file)
    return {"folders": folders, "watch": watch}


def _settle(key: dict[str, Any]) -> dict[str, Any]:
    recent = time.time_ns() - MTIME_SETTLE_NS
    for folder in key["folders"]:
        if folder[1] is not None and folder[1] > recent:
            folder[1] = None
    return key


def _revalidate(key: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """``(key, changed)``: the key brought up to date if the index holds, else ``(None, False)``.

    A folder whose mtime moved is listed again: only a change in its distribution metadata (not in
    its other files: the working directory is on ``sys.path`` too) makes the index stale.
    """
    changed = False
    for folder in key["folders"]:
        entry, mtime, listing = folder
        now = _mtime(entry)
        if now == mtime:  # unchanged, or still missing
            continue
        if listing is None or _metadata_listing(entry) != listing:  # a zip file or metadata changed
            return None, False
        folder[1], changed = now, True
    for file, mtime in key["watch"].items():
        if _mtime(file) != mtime:
            return None, False
    return (_settle(key) if changed else key), changed


def _read_entry_points() -> list[EntryPoint]:
    """The ``orchestrator`` entry points, first on ``sys.path`` winning a name (as pluggy does)."""
    import importlib.metadata

    found: dict[str, EntryPoint] = {}
    for dist in importlib.metadata.distributions():
        eps = [ep for ep in dist.entry_points if ep.group == GROUP and ep.name not in found]
        if not eps:
            continue
        name, version = dist.metadata["Name"] or "", dist.version or ""
        for ep in eps:
            found.setdefault(ep.name, EntryPoint(ep.name, ep.value, name, version))
    return list(found.values())


def claims_of(executors: Iterable[Any], hooks: Iterable[str]) -> Claims:
    """The claims of a plugin that registered these executor classes and implements these hooks."""
    names = tuple((cls.registry_name(), cls.__name__) for cls in executors)
    return Claims(names, tuple(sorted(hooks)))
