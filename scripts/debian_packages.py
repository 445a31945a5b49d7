"""Fetches a Debian package without root and reads files out of it, for test tools and data.

``apt-get download`` is tried first (it honours the machine's mirrors); otherwise the .deb comes
straight from the Debian pool URL. Either way its SHA-256 must match the pinned one (when a pin
is given), and it is read with Python alone (a .deb is an ar archive holding data.tar.*), so
neither dpkg nor root is needed.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def fetch_deb(apt_spec: str, pool_url: str, sha256: str | None) -> bytes:
    """The package's bytes; ``apt_spec`` as apt-get takes it (``name=version``)."""
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("apt-get"):
            result = subprocess.run(
                ["apt-get", "download", apt_spec], cwd=tmp, capture_output=True, check=False
            )
            debs = list(Path(tmp).glob("*.deb"))
            if result.returncode == 0 and debs:
                data = debs[0].read_bytes()
                if sha256 is None or hashlib.sha256(data).hexdigest() == sha256:
                    return data
    if sha256 is None:
        raise SystemExit(f"apt-get could not download {apt_spec} and no checksum is pinned")
    with urllib.request.urlopen(pool_url, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"{pool_url}: checksum mismatch")
    return data


def deb_files(deb: bytes, prefix: str) -> Iterator[tuple[str, bytes]]:
    """(path below ``prefix``, contents) of every regular file of the package under it."""
    members = _ar_members(deb)
    data_name = next(name for name in members if name.startswith("data.tar"))
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("./")
            if member.isfile() and name.startswith(prefix):
                source = archive.extractfile(member)
                assert source is not None
                yield name[len(prefix) :], source.read()


def _ar_members(data: bytes) -> dict[str, bytes]:
    """ar: an 8-byte magic, then 60-byte headers each followed by its (even-padded) data."""
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit("not a Debian package")
    members: dict[str, bytes] = {}
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
    return members
