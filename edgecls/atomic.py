"""Write artifacts so that nothing is ever half-written: a temporary name, then a rename."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional

from edgecls.errors import EdgeclsError

# errno values only a write gives: a full disk or quota, a file over RLIMIT_FSIZE, a read-only file system.
WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class WriteError(EdgeclsError):
    """A file could not be written (a full disk, a read-only folder): one line naming it, exit 1."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot write {path}: {reason}", exit_code=1)
        self.path, self.reason = Path(path), reason


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise EdgeclsError(f"cannot write to {path.parent}: {_why_not_a_folder(path.parent, exc)}") from None
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a model is meant to be copied and shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk: one line naming the file, nothing half-written left
            raise WriteError(path, exc.strerror or str(exc)) from None
        raise
    return path


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: do it once, at import (single-threaded)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """`text` as UTF-8. A file name's undecodable bytes in it (surrogate escapes) are written as the
    text \\xNN, as edgecls prints them: the file stays UTF-8 for every reader."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode("utf-8")
    return write_bytes_atomic(path, data)


def check_new_dir(final: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an existing `final` unless `force`, and a `final` that cannot be made (under a file, on a
    read-only disk): cheap, so call it before any heavy work."""
    final = Path(final)
    if os.path.lexists(final) and not force:  # a broken link too: it is there
        raise EdgeclsError(f"{final} already exists: choose another --out or pass --force to replace it")
    check_folder_writable("--out", final, final.parent)
    return final


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it is renamed to `final`.

    On any error (or a kill) the final path is untouched. The staging folder's name carries the
    process id, so a leftover from a killed run is removed by the next run, and a folder another
    running process is still filling is left alone.
    """
    final = check_new_dir(final, force)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        # the name escaped: a folder called "run **" or "[a]" is a name, not a pattern (** raised ValueError)
        for stale in final.parent.glob(f".{glob.escape(final.name)}.partial-*"):
            if not owner_alive(stale):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
        tmp.chmod(0o777 & ~UMASK)  # mkdtemp makes 0700; a run folder is as shareable as any other
    except OSError as exc:
        raise EdgeclsError(f"cannot write to {final.parent}: {_why_not_a_folder(final.parent, exc)}") from None
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in WRITE_FAILURES:  # a full disk while the run was written: name what, not a temp file
                raise EdgeclsError(f"cannot write {final}: {exc.strerror or exc}; nothing was left there",
                                   exit_code=1) from None
            raise
        except WriteError as exc:  # a file of the staged folder (curves.png): named as the folder it was for
            if tmp not in exc.path.parents:
                raise
            raise EdgeclsError(f"cannot write {final}: {exc.reason}; nothing was left there", exit_code=1) from None
        if os.path.lexists(final):
            if not force:  # another run (a second `train --out` at once) got there first: keep theirs
                raise EdgeclsError(f"{final} appeared while this run was working (another edgecls writing the "
                                   "same folder?): it was left as it is; pass --force to replace it", exit_code=1)
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:  # mkdir-like: fails if another process created `final` since the check above
                os.rename(tmp, final)
            except OSError as exc:
                if not (final.exists() and exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR)):
                    raise
                raise EdgeclsError(f"{final} appeared while this run was working (another edgecls writing the "
                                   "same folder?): it was left as it is; pass --force to replace it",
                                   exit_code=1) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def owner_alive(staging: Path, marker: str = ".partial-") -> bool:
    """Whether the process named in a `.NAME.partial-PID-xxxx` folder (`marker` then the PID) is still running."""
    try:
        pid = int(staging.name.rsplit(marker, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def private_tempdir(prefix: str) -> Iterator[Path]:
    """A temporary folder `/tmp/PREFIX-PID-xxxx`, removed afterwards; first removes the leftovers
    that killed processes (their PID gone) left under the same prefix."""
    base = Path(tempfile.gettempdir())
    for stale in base.glob(f"{glob.escape(prefix)}-*"):
        if stale.is_dir() and not stale.is_symlink() and not owner_alive(stale, f"{prefix}-"):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _file_in_the_way(folder: Path) -> Optional[Path]:
    """The file (or broken link) that stands where `folder` or a folder above it should be, if any."""
    there = nearest_existing(Path(folder))
    return None if there.is_dir() else there


def _in_the_way(blocker: Path) -> str:
    """What stands where a folder should be, in the user's terms."""
    if blocker.is_symlink() and not blocker.exists():
        return f"{blocker} is a broken link (to {os.readlink(blocker)}), not a folder"
    return f"{blocker} is a file, not a folder"


def _why_not_a_folder(folder: Path, exc: OSError) -> str:
    """Why `folder` could not be made, in the user's terms: "File exists" from mkdir means a file is in the way."""
    blocker = _file_in_the_way(Path(folder))
    return _in_the_way(blocker) if blocker is not None else exc.strerror or str(exc)


def check_no_file_in_the_way(option: str, folder: str | os.PathLike) -> None:
    """Fail when a file stands where `folder`, or a folder above it, should be (the folder is made later)."""
    blocker = _file_in_the_way(Path(folder))
    if blocker is not None:
        raise EdgeclsError(f"cannot use {option} {folder}: {_in_the_way(blocker)}")


def make_folder(option: str, folder: str | os.PathLike) -> Path:
    """Create `folder` (and the folders above it) for `option`; one line naming the cause if that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeclsError(f"cannot use {option} {folder}: {_why_not_a_folder(folder, exc)}") from None
    return folder


def check_file_writable(option: str, target: Path) -> None:
    """Fail before any work if the file `target` cannot be written: a folder there, a file above it, a
    read-only folder. Leaves nothing behind."""
    if Path(target).is_dir():
        raise EdgeclsError(f"cannot write to {option} {target}: it is a folder; give a file name")
    check_folder_writable(option, target, Path(target).parent)


def nearest_existing(path: Path) -> Path:
    """`path`, or the first path above it that is there (where a new folder under it will be made, unless it
    is a file or a broken link: then that is in the way)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_folder_writable(option: str, target: Path, folder: Path) -> None:
    """Fail before any work if `folder` (or the first existing folder above it) cannot be written.

    `option` names the command-line option in the message (--out, --report, --json)."""
    existing = nearest_existing(Path(folder))
    if not existing.is_dir():
        raise EdgeclsError(f"cannot write to {option} {target}: {_in_the_way(existing)}")
    try:  # os.access says yes to root even on a read-only file system: try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise EdgeclsError(f"cannot write to {option} {target}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (a flock on the folder itself: no lock file is left in it)
    while a set of files is made for it: a second edgecls writing `what` there at the same time is
    refused at once. The folder is made if missing, and removed again if this run leaves it empty.
    The kernel drops the lock when the process ends, however it ends."""
    import fcntl

    folder = Path(folder)
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise EdgeclsError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgeclsError(f"another edgecls is writing {what} to {folder} right now: let it finish, or give "
                               "another --out", exit_code=1) from None
        try:
            yield folder
        finally:
            if made:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: this run wrote nothing there
    finally:
        os.close(fd)


def write_set(folder: str | os.PathLike, files: dict[str, bytes], previous: Iterable[str] = ()) -> list[Path]:
    """Write a set of files that belong together (an export: models, labels.txt, its index last) so
    that the folder holds the whole new set or the whole old one: every file is written and synced
    under a staging folder first, then renamed into place, the index (the last name) last; then the
    files of the `previous` set that this one does not have are removed. A failure while writing
    leaves the old set untouched. Hold folder_lock around it when another process could write too."""
    folder = Path(folder)
    stale = [name for name in previous if name not in files and Path(name).name == name]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-{os.getpid()}-", dir=folder))
    except OSError as exc:
        raise EdgeclsError(f"cannot write to {folder}: {_why_not_a_folder(folder, exc)}") from None
    try:
        for name, data in files.items():
            try:
                with open(staging / name, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:  # a full disk: named as the file the user will look for
                raise EdgeclsError(f"cannot write {folder / name}: {exc.strerror or exc}; the folder keeps what "
                                   "it had", exit_code=1) from None
        written = []
        for name in files:  # renames in one folder: no space needed, nothing left half-written
            os.replace(staging / name, folder / name)
            written.append(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    return written
