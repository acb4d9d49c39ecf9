"""Opening files a user names: regular files only, reads bounded by the bytes actually read, hashing in chunks.

`st_size` cannot bound a read (it is 0 for /dev/zero, a FIFO never ends and opening one for
reading blocks until a writer comes), so every opener here refuses what is not a regular file
before reading a byte, and reads at most `limit + 1` bytes. Failures are OSErrors whose
`strerror` is the reason, so callers' existing `except OSError` one-liners name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import BinaryIO

CHUNK = 1 << 20  # 1 MiB: hashing a 2 GB file costs 1 MiB of memory, not 2 GB


class NotRegularFileError(OSError):
    """A FIFO, device, socket or folder where a file was expected."""


class FolderNotFileError(NotRegularFileError, IsADirectoryError):
    """A folder where a file was expected: also an IsADirectoryError, as open() of a folder raises."""


class FileTooLargeError(OSError):
    """More bytes than the caller's cap."""


def kind_of(mode: int) -> str:
    """What a stat mode is, in words: "regular file", "FIFO", "character device", ..."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def not_regular(path: str | os.PathLike, mode: int) -> NotRegularFileError:
    kind = kind_of(mode)
    if kind == "folder":
        return FolderNotFileError(errno.EISDIR, "is a folder, not a regular file", str(path))
    return NotRegularFileError(errno.EINVAL, f"is a {kind}, not a regular file", str(path))


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """stat() `path` (following links) and refuse anything but a regular file, without opening it."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode)
    return st


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open `path` for reading, binary, refusing a non-regular file (a FIFO is opened non-blocking,
    so this never waits for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path, st.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_capped(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of regular file `path`; FileTooLargeError past `limit` bytes (counted, not trusted)."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of regular file `path`, read in 1 MiB blocks."""
    import hashlib  # here: its OpenSSL binding costs a cold `edgecls predict` about 3 MiB

    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
