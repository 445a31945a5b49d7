"""Audio that a transcription job names by URI instead of carrying.

Only ``file://`` is read: a path on a volume the workers share (a Kubernetes PVC, an NFS
mount). Workers usually have no internet access, and fetching arbitrary URLs from inside
the cluster would let any caller probe internal services, so other schemes are refused.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from speech_platform.errors import InvalidArgument

SUPPORTED_SCHEMES = ("file",)


def path_of(uri: str) -> Path:
    """The local path a file:// URI names, or InvalidArgument saying why it is not usable."""
    parts = urlsplit(uri)
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise InvalidArgument(
            f"uri {uri!r}: scheme {parts.scheme or '(none)'!r} is not supported; "
            "use file:///path/on/a/volume/the/workers/share"
        )
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument(f"uri {uri!r}: file URIs must not name a host ({parts.netloc!r})")
    path = Path(unquote(parts.path))
    if not path.is_absolute() or not parts.path:
        raise InvalidArgument(f"uri {uri!r}: the path must be absolute (file:///...)")
    return path


def check_readable(uri: str, max_bytes: int) -> None:
    """Fails now, rather than later in a worker, when this process can tell the URI is bad."""
    _checked_size(uri, path_of(uri), max_bytes)


def read_uri(uri: str, max_bytes: int) -> bytes:
    path = path_of(uri)
    _checked_size(uri, path, max_bytes)
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidArgument(f"uri {uri!r}: cannot read: {error.strerror or error}") from None


def _checked_size(uri: str, path: Path, max_bytes: int) -> int:
    try:
        info = path.stat()
    except OSError as error:
        raise InvalidArgument(f"uri {uri!r}: cannot read: {error.strerror or error}") from None
    if not path.is_file():
        raise InvalidArgument(f"uri {uri!r}: not a regular file")
    if info.st_size == 0:
        raise InvalidArgument(f"uri {uri!r}: the file is empty")
    if info.st_size > max_bytes:
        raise InvalidArgument(
            f"uri {uri!r}: {info.st_size} bytes is over the job audio limit of {max_bytes} bytes"
        )
    return info.st_size
