"""Stores behind one small interface: a local folder here, an S3 prefix in ``_s3store``.

Every write goes to a hidden temp name (or a multipart upload) first and is published only once
verified, so a reader of the destination never sees a partial file, even after a crash.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import os
import stat as _stat
from typing import (TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, NamedTuple, Protocol,
                    Sequence)

from .journal import Journal
from .locations import is_private, is_s3, private_name

if TYPE_CHECKING:
    from .s3store import S3Store

Fill = Callable[[BinaryIO], None]


# Compared by value by the callers (``kept.get(rel) == CHANGED``): a changed file is left for the
# next run, where any other reason is a failure of the task.
CHANGED = "changed since it was copied"  # why a conditional delete kept an object


class VerifyError(Exception):
    """A copy did not match its source: its source must not be deleted or archived."""


class SourceChanged(Exception):
    """The source changed while it was copied: leave it for the next run."""


# A named tuple, not a dataclass: several are made per file (listing, ledger, stat, claim) and at a
# million files the frozen dataclass's __init__ showed in profiles. Equality is the tuple's, which
# is what the identity checks compare.
class Entry(NamedTuple):
    """One file: path relative to the store root ('/'-separated), size and a version fingerprint."""

    rel: str
    size: int
    version: str


class Store(Protocol):
    """What transfer, archive and claim ask of a place: ``LocalStore`` here, ``S3Store`` in
    ``s3store``. What only one kind has (a local path, a server-side copy) is reached after a
    check of ``is_local``."""

    is_local: bool
    uri: str

    def exists(self) -> bool: ...

    def list(self) -> Iterator[Entry]:
        """Every file below the root, streamed (never the whole listing at once)."""
        ...

    def stat(self, rel: str) -> Entry | None: ...

    def ensure_unchanged(self, entry: Entry) -> None: ...

    def open_read(self, entry: Entry) -> BinaryIO: ...

    def checksum(self, rel: str) -> str: ...

    def write_stream(self, rel: str, fill: Fill, journal: Journal, size_hint: int | None,
                     before_publish: Callable[[], None]) -> int: ...

    def delete(self, entries: Sequence[Entry]) -> dict[str, str]: ...


class CountingWriter:
    """Counts the bytes a transformation writes, so the published size can be checked against it."""

    def __init__(self, raw: Any, digest: Any = None) -> None:
        self.raw = raw
        self.count = 0
        self.digest = digest  # a hashlib object fed with the bytes written, when given

    def write(self, data: Any) -> int:
        written = self.raw.write(data)
        size = len(memoryview(data)) if written is None else written
        if self.digest is not None:
            self.digest.update(memoryview(data)[:size])
        self.count += size
        return size

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def partial_path(path: str) -> str:
    """A fresh hidden temp name next to ``path``: unique per write (concurrent runs never share
    one) and short whatever the length of ``path``'s name."""
    head, name = os.path.split(path)
    return os.path.join(head, private_name("partial", name))


# Named at module level: inside LocalStore, ``list`` is its method, not the builtin.
LinkOutcome = tuple[list[tuple[Entry, int | Exception]], list[Entry]]

class LocalStore:
    is_local = True

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._prefix = self.root.rstrip("/") + "/"
        self.uri = self.root
        self._made: set[str] = set()
        # Turned off for good by the first EXDEV, EOPNOTSUPP or ENOSYS: the run's next files are
        # copied without trying a link that cannot work.
        self.links = True  # hard links into this folder may work (see ``link_files``)

    def path(self, rel: str) -> str:
        if os.sep == "/":  # the common case, kept cheap: called several times per file
            return f"{self._prefix}{rel}"
        return os.path.join(self.root, *rel.split("/"))

    def exists(self) -> bool:
        return os.path.isdir(self.root)

    def list(self) -> Iterator[Entry]:
        """Every file below the root, recursively, without our own temp and claimed files."""
        # Depth first with an explicit stack, one folder's scandir open at a time: memory follows
        # the depth and width of the tree, not the number of files.
        stack = [(self.root, "")]
        while stack:
            folder, prefix = stack.pop()
            try:
                scan = os.scandir(folder)
            except FileNotFoundError:
                if not prefix:
                    raise  # the landing folder itself: the caller says what is missing
                continue  # a sub-folder removed since its parent was read holds nothing to stage
            with scan as it:
                for item in it:
                    # A symlink to a folder is not followed (it could loop, or lead outside the
                    # landing folder); a symlink to a file is staged, its target read.
                    if item.is_dir(follow_symlinks=False):
                        stack.append((item.path, f"{prefix}{item.name}/"))
                    elif item.is_file() and not is_private(item.name):
                        # The folder was read in one go, the stat comes later: a sender that
                        # renames "x.part" to "x" in between leaves a name that is gone. It is not
                        # there to stage; its new name is listed, now or at the next poll.
                        try:
                            status = item.stat()
                        except FileNotFoundError:
                            continue
                        yield local_entry(f"{prefix}{item.name}", status)

    def stat(self, rel: str) -> Entry | None:
        try:
            # NotADirectoryError: a folder on the path was replaced by a file since the listing,
            # which is the file being gone, not a failure.
            return local_entry(rel, os.stat(self.path(rel)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def ensure_unchanged(self, entry: Entry) -> None:
        # The whole version, ctime included: a rewrite in place during the copy that kept size and
        # mtime still moved the ctime, so the copy is never published as the listed file.
        if self.stat(entry.rel) != entry:
            raise SourceChanged(entry.rel)

    def open_read(self, entry: Entry) -> BinaryIO:
        return open(self.path(entry.rel), "rb")

    def checksum(self, rel: str) -> str:
        with open(self.path(rel), "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def write_stream(self, rel: str, fill: Fill, journal: Journal, size_hint: int | None,
                     before_publish: Callable[[], None]) -> int:
        """Write through ``fill`` into a hidden temp file, check its size, then rename it into place."""
        counter: list[CountingWriter] = []

        def produce(temp: str) -> tuple[int, int]:
            with open(temp, "wb") as f:
                counter.append(CountingWriter(f))
                fill(counter[0])  # type: ignore[arg-type]
            return counter[0].count, os.stat(temp).st_size

        return self._publish(rel, produce, journal, before_publish)

    def copy_file(self, source: str, rel: str, entry: Entry, journal: Journal,
                  before_publish: Callable[[], None]) -> int:
        """Kernel-side copy (``copy_file_range``, else ``sendfile``), no Python byte loop."""

        def produce(temp: str) -> tuple[int, int]:
            # A short copy, or a file grown since it was listed, fails the size check.
            return entry.size, kernel_copy(source, temp, entry.size)

        return self._publish(rel, produce, journal, before_publish)

    def link_files(self, source: "LocalStore", entries: Sequence[Entry], journal: Journal,
                   check: Callable[[], None]) -> LinkOutcome:
        """Publish each of ``entries`` of ``source`` here as a hard link to it, verified.

        Returns, for each file linked or failed, the entry to record (for a link, the file's
        identity once published) with its size or why not; and the entries that need a real copy
        instead (a symlink, a filesystem that cannot link)."""
        plan = []
        for entry in entries:
            final = self.path(entry.rel)
            folder, _, name = final.rpartition(os.sep)
            self._makedirs(folder)
            plan.append((entry, source.path(entry.rel), final,
                         f"{folder}{os.sep}{private_name('partial', name)}"))
        # All the batch's temp names in one journal line, written before the first link exists: a
        # kill at any point leaves only names recovery knows (it removes them; a temp link is never
        # the only name of a file, the landing one still exists).
        journal.begin_all([temp for *_, temp in plan])
        results: list[tuple[Entry, int | Exception]] = []
        rest: list[Entry] = []
        try:
            for i, (entry, path, final, temp) in enumerate(plan):
                if not self.links:
                    rest.append(entry)
                    continue
                # A cancel is noticed within 64 links; checking per file costs more than the link.
                if i % 64 == 0:
                    check()
                try:
                    linked = _link(entry, path, final, temp)
                except _CannotLink as exc:
                    # EPERM/EMLINK/EACCES concern this file (fs.protected_hardlinks refuses another
                    # user's file, a file at its link limit): the others may still link. Another
                    # filesystem concerns them all.
                    self.links = exc.file_only
                    rest.append(entry)
                except Exception as exc:
                    results.append((entry, exc))
                else:
                    results.append((linked, entry.size))
        finally:
            # Every temp is gone by now (renamed, or removed by ``_link``); lazy: if the end is lost
            # in a crash, recovery only removes names that no longer exist.
            journal.end_all([temp for *_, temp in plan], lazy=True)
        return results, rest

    def _publish(self, rel: str, produce: Callable[[str], tuple[int, int]], journal: Journal,
                 before_publish: Callable[[], None]) -> int:
        final = self.path(rel)
        # A dump folder made meanwhile by a concurrent run is fine (exist_ok); one removed meanwhile
        # makes this copy fail and the file stays in landing.
        self._makedirs(os.path.dirname(final))
        temp = partial_path(final)
        journal.begin(temp)
        published = False
        try:
            expected, actual = produce(temp)  # bytes meant, bytes the temp file holds
            if actual != expected:
                raise VerifyError(f"{final}: wrote {actual} bytes, expected {expected}")
            # Checked last, right before the rename: a source changed during the copy must not be
            # published as the listed version (``SourceChanged``, the temp file is removed).
            before_publish()
            # Atomic and replacing: a reader sees the old file or the new one, never part of it, and
            # a rerun's copy replaces what an earlier run published under the same name.
            os.replace(temp, final)
            published = True
        finally:
            if not published:
                remove_quietly(temp)
            journal.end(temp, lazy=True)
        return expected

    def _makedirs(self, folder: str) -> None:
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            if len(self._made) >= 4096:  # a cache, not a record: memory stays bounded
                self._made.clear()
            self._made.add(folder)

    def delete(self, entries: Sequence[Entry]) -> dict[str, str]:
        """Delete files (claimed ones: see ``claim``); return why, for each one not deleted."""
        kept = {}
        for entry in entries:
            try:
                # Local deletes get claimed names (``claim``), never a landing name: a file renamed
                # over the landing name meanwhile is not the one unlinked here.
                os.unlink(self.path(entry.rel))
            except FileNotFoundError:
                pass
            except OSError as exc:
                kept[entry.rel] = exc.strerror or str(exc)
        return kept


def as_local(store: Store) -> LocalStore:
    """``store`` as the local folder it is (the caller checked ``is_local``)."""
    assert isinstance(store, LocalStore), store.uri
    return store


def as_s3(store: Store) -> "S3Store":
    """``store`` as the S3 prefix it is (the caller checked ``is_local``)."""
    assert not store.is_local, store.uri
    return store  # type: ignore[return-value]


def kernel_copy(source: str, target: str, size: int) -> int:
    """Copy ``source`` (of ``size`` bytes, as listed) to the new file ``target`` in the kernel;
    return the size of ``target``. Fewer system calls than ``shutil.copyfile`` (which stats
    both names first), which counts at a million files."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            _kernel_copy(src, dst, size)
            return os.fstat(dst).st_size
        finally:
            os.close(dst)
    finally:
        os.close(src)


_CHUNK = 1 << 30


def _kernel_copy(src: int, dst: int, size: int) -> int:
    """Copy to the end of ``src``; stop asking once ``size`` bytes are copied (a file that grew
    since its listing is caught by the caller's checks anyway)."""
    total = 0
    copy_range = getattr(os, "copy_file_range", None)
    try:
        if copy_range is not None:
            while total < size and (n := copy_range(src, dst, _CHUNK)) > 0:
                total += n
            return total
    except OSError as exc:
        if total or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                      errno.EBADF, errno.EPERM):
            raise
    try:
        while total < size and (n := os.sendfile(dst, src, None, _CHUNK)) > 0:
            total += n
        return total
    except OSError as exc:
        if total or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while total < size and (block := os.read(src, 1 << 20)):
        view = memoryview(block)
        while view:
            written = os.write(dst, view)
            view = view[written:]
            total += written
    return total


class _CannotLink(Exception):
    """This file must be copied instead; ``file_only``: links may still work for the others."""

    def __init__(self, file_only: bool) -> None:
        self.file_only = file_only


# What a filesystem answers when it cannot link at all, or not across to the dump's device.
_NO_LINKS_HERE = {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS}


def _link(entry: Entry, path: str, final: str, temp: str) -> Entry:
    """Link ``path`` (listed as ``entry``) to ``temp``, check it is the listed file, rename it
    to ``final``; return the file's entry as it is then."""
    try:
        # Never following a symlink: a landing symlink must not become a hard link to a file outside
        # the landing folder, which the dump would then share. linkat never replaces a name, and the
        # temp name is fresh, so nothing is overwritten here.
        os.link(path, temp, follow_symlinks=False)
    except FileNotFoundError:
        if not os.path.lexists(path):
            raise SourceChanged(entry.rel) from None
        raise
    except OSError as exc:
        if exc.errno in _NO_LINKS_HERE or exc.errno in (errno.EPERM, errno.EMLINK, errno.EACCES):
            raise _CannotLink(exc.errno not in _NO_LINKS_HERE) from None
        raise
    try:
        st = os.lstat(temp)
        # We linked the symlink itself: it is removed (except clause below) and the file copied, as
        # its target's bytes.
        if _stat.S_ISLNK(st.st_mode):
            raise _CannotLink(True)
        # The verification of the "copy": the temp name is the listed file itself (device, inode,
        # size, mtime), not a file renamed over the landing name since the listing. Not the ctime,
        # which our link just moved.
        if not same_file(st, entry):
            raise SourceChanged(entry.rel)
        os.rename(temp, final)
    except BaseException:
        remove_quietly(temp)
        raise
    # POSIX: a rename between two names of one file does nothing and succeeds. Three names (landing,
    # temp, dump) mean the dump may already have been this very file (a transfer run again), and
    # then the temp name is still there.
    if st.st_nlink > 2:
        remove_quietly(temp)
    # The identity to record for post_staging, with the ctime our link and rename gave it: its check
    # compares the whole version, ctime included, as for a copied file.
    after = os.lstat(final)
    if not same_file(after, entry):
        raise SourceChanged(entry.rel)
    return local_entry(entry.rel, after)


def local_entry(rel: str, st: os.stat_result) -> Entry:
    """The version is size, mtime, ctime, inode and device: a rewrite in place that keeps the size
    and restores the mtime (``cp -p``, ``rsync --inplace -t``) still moves the ctime, which no user
    call can set back, so the new content is never taken for the copied one."""
    version = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
    return Entry(rel, st.st_size, version)


def same_file(st: os.stat_result, entry: Entry) -> bool:
    """``st`` is the file ``entry`` was listed from: device, inode, size and mtime. Not the ctime,
    which a rename (our own claim of the file) moves."""
    size, mtime, _, inode, device = entry.version.split(":")
    return (st.st_ino == int(inode) and st.st_mtime_ns == int(mtime)
            and st.st_size == int(size) and st.st_dev == int(device))


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_store(location: str, s3_client: Callable[[], Any]) -> Store:
    """A store for ``location``; boto3 is imported only for ``s3://`` locations."""
    if is_s3(location):
        from .s3store import S3Store

        return S3Store(location, s3_client())
    return LocalStore(location[len("file://"):] if location.startswith("file://") else location)
