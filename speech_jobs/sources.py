"""Audio that a transcription job names by URI instead of carrying.

Only ``file://`` is read, and only under the directories ``jobs.file_roots`` names (a volume
the workers share: a Kubernetes PVC, an NFS mount); with no roots (the default) every
file:// URI is refused. Workers usually have no internet access, and fetching arbitrary
URLs from inside the cluster would let any caller probe internal services, so other schemes
are refused too.

A caller must learn nothing about files it may not read, so:

* the path is matched to a root by its text, and may not hold ``..``;
* it is opened one component at a time, each relative to the directory opened before it,
  with ``O_NOFOLLOW``: a symbolic link anywhere below the root (to ``/etc``, to
  ``/proc/self/root``) is refused, and swapping a component for a link after a check
  changes nothing, since there is no second lookup by name;
* the size is read from the opened descriptor (``fstat``), and the read is bounded by the
  limit whatever the file grows to;
* every refusal that depends on the file system (missing, unreadable, not a regular file,
  outside the roots, through a link, empty, too big) is the same error, word for word.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from speech_platform.errors import InvalidArgument

SUPPORTED_SCHEMES = ("file",)
_READ_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: opening a FIFO planted under a root must not hang the worker.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def path_of(uri: str) -> PurePosixPath:
    """The local path a file:// URI names, or InvalidArgument saying why it is not usable
    (checks of the URI's text only: nothing here touches the file system)."""
    parts = urlsplit(uri)
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise InvalidArgument(
            f"uri {uri!r}: scheme {parts.scheme or '(none)'!r} is not supported; "
            "use file:///path/on/a/volume/the/workers/share"
        )
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument(f"uri {uri!r}: file URIs must not name a host ({parts.netloc!r})")
    path = PurePosixPath(unquote(parts.path))
    if not parts.path or not path.is_absolute():
        raise InvalidArgument(f"uri {uri!r}: the path must be absolute (file:///...)")
    return path


def refused(uri: str, max_bytes: int) -> InvalidArgument:
    """The one answer to every file-system refusal (see the module doc)."""
    return InvalidArgument(
        f"uri {uri!r} cannot be used: it must name a readable regular file of 1 to "
        f"{max_bytes} bytes under one of the server's job file roots (jobs.file_roots), "
        "with no symbolic link on the way"
    )


def _relative_parts(uri: str, roots: Sequence[Path], max_bytes: int) -> tuple[Path, list[str]]:
    """(root, the components below it), matched by text alone."""
    if not roots:
        raise InvalidArgument(
            f"uri {uri!r}: file:// sources are off on this server (jobs.file_roots is empty); "
            "send the audio bytes instead"
        )
    path = path_of(uri)
    for root in sorted(roots, key=lambda r: len(PurePosixPath(r).parts), reverse=True):
        root_parts = PurePosixPath(os.path.abspath(root)).parts
        if path.parts[: len(root_parts)] == root_parts:
            rest = list(path.parts[len(root_parts) :])
            if rest and all(part not in ("", ".", "..") for part in rest):
                return Path(os.path.abspath(root)), rest
    raise refused(uri, max_bytes)


def check_within_roots(uri: str, roots: Sequence[Path], max_bytes: int) -> None:
    """Refuses at submit what no worker would read (by the URI's text; the worker checks
    the file itself when it reads)."""
    _relative_parts(uri, roots, max_bytes)


def _open_beneath(root: Path, parts: list[str]) -> int:
    """A descriptor of root/parts..., opened without following any link below ``root``."""
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            inner = os.open(name, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=directory)
    finally:
        os.close(directory)


@dataclass
class OpenedSource:
    """A source file, open: everything read from here comes through ``fd``."""

    uri: str
    fd: int
    size: int
    max_bytes: int

    def read(self) -> bytes:
        """The whole file, at most ``max_bytes`` (a file that grew past it is refused)."""
        chunks: list[bytes] = []
        total = 0
        os.lseek(self.fd, 0, os.SEEK_SET)
        while total <= self.max_bytes:
            chunk = os.read(self.fd, min(_READ_CHUNK, self.max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > self.max_bytes or total == 0:
            raise refused(self.uri, self.max_bytes)
        return b"".join(chunks)


@contextmanager
def open_source(uri: str, roots: Sequence[Path], max_bytes: int) -> Iterator[OpenedSource]:
    """Opens the file a file:// URI names, checked (see the module doc)."""
    root, parts = _relative_parts(uri, roots, max_bytes)
    try:
        fd = _open_beneath(root, parts)
    except OSError:
        raise refused(uri, max_bytes) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= max_bytes:
            raise refused(uri, max_bytes)
        os.set_blocking(fd, True)
        yield OpenedSource(uri, fd, info.st_size, max_bytes)
    finally:
        os.close(fd)


def check_readable(uri: str, roots: Sequence[Path], max_bytes: int) -> None:
    """Fails now, rather than later in a worker, when this process can tell the URI is bad."""
    with open_source(uri, roots, max_bytes):
        pass


def read_uri(uri: str, roots: Sequence[Path], max_bytes: int) -> bytes:
    with open_source(uri, roots, max_bytes) as source:
        try:
            return source.read()
        except OSError:
            raise refused(uri, max_bytes) from None
