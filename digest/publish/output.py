"""Write the site atomically: build a new generation, then swap one symlink.

``OUTPUT_DIR`` (say ``public``) is a symlink to a folder in the hidden sibling
``.public.generations/``. A publish builds the next generation beside the
current one; files it did not change are hard links to the current ones (same
bytes, same mtime, so ETag and Last-Modified stay stable), changed files are
written anew. Only when everything is written does ``os.replace`` swap the
symlink. A crash or error at any point before that leaves the previous output
exactly as it was; the half-built generation is removed by the next run.

One generation before the current one is kept, so a web server that is in the
middle of a request on the old tree finishes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from digest.errors import OutputError, shown_path

_PARTIAL = ".partial"


def generations_dir(output_dir: Path) -> Path:
    return output_dir.parent / f".{output_dir.name}.generations"


def current_generation(output_dir: Path) -> Path | None:
    """The folder OUTPUT_DIR currently shows, if any."""
    if output_dir.is_symlink():
        target = output_dir.parent / os.readlink(output_dir)
        return target if target.is_dir() else None
    if output_dir.is_dir():
        return output_dir
    return None


def safe_relpath(relpath: str) -> str:
    """Refuse any output path that could leave the output folder."""
    if (not relpath or relpath[0] == "/" or "\\" in relpath or "\x00" in relpath
            or any(part in ("..", ".", "") for part in relpath.split("/"))):
        raise OutputError(f"refusing to write {relpath!r}: it would leave the output folder",
                          "rename the article so its slug has no '..' or leading '/'")
    return relpath


class Generation:
    """A new version of the output folder under construction.

    Use as a context manager: on a clean exit call :meth:`commit`; leaving the
    block without committing discards the partial folder.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.root = generations_dir(output_dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.root / "lock", "a")  # noqa: SIM115 - held until close
        except OSError as exc:
            raise OutputError(f"cannot create {shown_path(self.root)} ({exc.strerror})",
                              "check that the folder of OUTPUT_DIR is writable") from exc
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one publisher at a time
        self.previous = current_generation(output_dir)
        self._cleanup_partials()
        number = 1 + max((_number(p.name) for p in self.root.iterdir()), default=0)
        self.name = f"g{number:06d}"
        self.path = self.root / (self.name + _PARTIAL)
        try:
            self.path.mkdir()
        except OSError as exc:
            self._lock.close()
            raise OutputError(f"cannot create {shown_path(self.path)} ({exc.strerror})",
                              "check free disk space and permissions of OUTPUT_DIR") from exc
        self._dirs: set[str] = set()
        self.written = 0  # files written with new bytes
        self.kept = 0  # files carried over unchanged
        self.bytes_written = 0
        self.committed = False

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()

    def previous_bytes(self, relpath: str) -> bytes | None:
        if self.previous is None:
            return None
        try:
            return (self.previous / relpath).read_bytes()
        except OSError:
            return None

    def has_previous(self, relpath: str) -> bool:
        return self.previous is not None and (self.previous / relpath).is_file()

    def write(self, relpath: str, data: bytes) -> bool:
        """Place `data` at relpath; reuse the previous file when identical. True if changed."""
        changed = place(self.path, self.previous, relpath, data, self._dirs)
        self.count(changed, len(data))
        return changed

    def count(self, changed: bool, nbytes: int) -> None:
        """Account for a file another process placed with :func:`place`."""
        if changed:
            self.written += 1
            self.bytes_written += nbytes
        else:
            self.kept += 1

    def discard(self, relpath: str) -> None:
        """Remove a file placed earlier in this generation."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / safe_relpath(relpath)).unlink()

    def keep(self, relpath: str) -> bool:
        """Carry a file over from the previous generation unchanged. False if there is none."""
        if self.previous is None:
            return False
        try:
            _link(f"{self.previous}/{relpath}", self._prepare(relpath))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise OutputError(f"cannot write {shown_path(relpath)} in {shown_path(self.path)} "
                              f"({exc.strerror})",
                              "check free disk space and permissions of OUTPUT_DIR") from exc
        self.kept += 1
        return True

    def commit(self) -> None:
        """Make the new generation the one OUTPUT_DIR shows, atomically."""
        try:
            os.sync()
            final = self.root / self.name
            os.rename(self.path, final)
            link_tmp = self.output_dir.parent / f".{self.output_dir.name}.swap"
            if link_tmp.is_symlink() or link_tmp.exists():
                link_tmp.unlink()
            os.symlink(os.path.relpath(final, self.output_dir.parent), link_tmp)
            moved = ""
            if self.output_dir.exists() and not self.output_dir.is_symlink():
                # First publish over a plain folder: move it aside (kept one round), then link.
                moved = f"g000000-original-{self.name}"
                os.rename(self.output_dir, self.root / moved)
            os.replace(link_tmp, self.output_dir)
        except OSError as exc:
            raise OutputError(f"cannot switch {shown_path(self.output_dir)} to the new output "
                              f"({exc.strerror or exc})",
                              "check permissions of the folder that holds OUTPUT_DIR") from exc
        self.committed = True
        self._prune(keep={final.name, moved, self.previous.name if self.previous else ""})

    def _prepare(self, relpath: str) -> str:
        return _prepare(self.path, relpath, self._dirs)

    def _cleanup_partials(self) -> None:
        for path in self.root.iterdir():
            if path.name.endswith(_PARTIAL):
                shutil.rmtree(path, ignore_errors=True)

    def _prune(self, keep: set[str]) -> None:
        for path in self.root.iterdir():
            if path.is_dir() and path.name.startswith("g") and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)


def place(root: Path, previous: Path | None, relpath: str, data: bytes, made: set[str]) -> bool:
    """Write `data` to root/relpath, or hard-link the previous generation's identical file.

    A free function so reader processes can fill a generation in parallel. `made`
    is the caller's record of the folders it created under this root: it must
    live no longer than the generation, or a failed publish would leave it naming
    folders that were removed with the partial generation.
    Returns True when new bytes were written, False when the old file was reused.
    """
    target = _prepare(root, relpath, made)
    old_second: int | None = None  # the whole second the previous version was written in
    if previous is not None:
        old = f"{previous}/{relpath}"
        try:
            info = os.stat(old)
            if info.st_size == len(data):
                with open(old, "rb") as handle:
                    same = handle.read() == data
                if same:
                    _link(old, target)
                    return False
            old_second = int(info.st_mtime)
        except OSError:
            pass
    try:
        _write_new(target, data)
        if old_second is not None:
            _later_than(target, old_second)
    except OSError as exc:
        raise OutputError(f"cannot write {shown_path(relpath)} in {shown_path(root)} "
                          f"({exc.strerror})",
                          "check free disk space and permissions of OUTPUT_DIR") from exc
    return True


def _later_than(target: str, old_second: int) -> None:
    """Give a new version a modification time in a later whole second than the old one's.

    Last-Modified has whole seconds: a file changed within the second its previous
    version was written in would show the same date, and a feed reader asking with
    If-Modified-Since (newsboat does) would be told "not modified" and miss the
    change, from `digest serve` and from any other server alike.
    """
    if int(os.stat(target).st_mtime) <= old_second:
        moment = (old_second + 1) * 1_000_000_000
        os.utime(target, ns=(moment, moment))


def _prepare(root: Path, relpath: str, made: set[str]) -> str:
    """The target path for relpath under root (checked), with its folder created."""
    safe_relpath(relpath)
    parent = f"{root}/{relpath.rpartition('/')[0]}"
    if parent not in made:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {shown_path(parent)} ({exc.strerror})",
                              "check free disk space and permissions of OUTPUT_DIR") from exc
        made.add(parent)
    return f"{root}/{relpath}"


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _write_new(target: str, data: bytes) -> None:
    """Write a new file. Never write into an existing one: it may be a hard link that the
    current (published) generation shares. (Plain descriptor calls: a publish writes
    thousands of files, and a buffered file object costs more than the write.)"""
    try:
        fd = os.open(target, _NEW_FILE, 0o666)
    except FileExistsError:
        os.unlink(target)
        fd = os.open(target, _NEW_FILE, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        os.unlink(target)
        os.link(source, target)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copy2(source, target)  # file systems without hard links


def _number(name: str) -> int:
    digits = name[1:7]
    return int(digits) if name.startswith("g") and digits.isdigit() else 0
