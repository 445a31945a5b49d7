"""Fetches a Debian package without root and reads files out of it, for test tools and data.

The one Debian fetcher of the project. ``apt-get download NAME=VERSION`` fetches the package
by name from the machine's configured mirrors (the registry is never named here). It needs
package lists: when the machine's own lists do not know the package (missing or stale lists,
a fresh container), the lists are refreshed into a private directory inside .venv with
``apt-get -o Dir::State::Lists=... -o Dir::Cache=... -o Debug::NoLocking=1 update``, which
works as any user. The download's SHA-256 must match the pinned one (where one is pinned), it
is cached in .venv/cache/deb, and it is read with Python alone (a .deb is an ar archive holding
data.tar.*), so neither dpkg nor root is needed.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tools.fetch import CACHE_DIR, FetchError

DEB_CACHE = CACHE_DIR / "deb"
#: Private apt state for users whose machine lists are missing or stale (no root needed).
APT_DIR = CACHE_DIR / "apt"


def debian_arch(what: str) -> str:
    """Debian's name for this machine's architecture (``what`` names the package wanted)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise FetchError(f"no Debian {what} package known for {machine}; install it another way")
    return arch


def private_apt_options(apt_dir: Path | None = None) -> list[str]:
    """apt-get options that keep package lists and caches in ``apt_dir``, with no locking."""
    apt_dir = apt_dir or APT_DIR
    return [
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", "Debug::NoLocking=1",
    ]


def fetch_deb(name: str, version: str, sha256: str | None, arch: str | None = None) -> bytes:
    """The bytes of Debian package ``name`` at ``version`` (``arch`` for arch-specific ones)."""
    spec = f"{name}:{arch}={version}" if arch else f"{name}={version}"
    cached = DEB_CACHE / f"{name}_{version}_{arch or 'all'}.deb".replace(":", "%3a")
    if cached.is_file():
        data = cached.read_bytes()
        if sha256 is None or hashlib.sha256(data).hexdigest() == sha256:
            return data
        cached.unlink()
    if shutil.which("apt-get") is None:
        raise FetchError(f"{spec}: apt-get is not on PATH; install {name} another way")
    downloaded = _apt_download(spec, [])
    if downloaded is None:  # the machine's lists do not have it: refresh private ones, retry
        _private_update()
        downloaded = _apt_download(spec, private_apt_options())
    if downloaded is None:
        raise FetchError(f"apt-get download {spec} failed, with the machine's package lists and "
                         f"with fresh ones in {APT_DIR}")
    data = downloaded
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise FetchError(f"{spec}: checksum mismatch (pinned sha256 {sha256})")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, cached)
    return data


def _apt_download(spec: str, options: list[str]) -> bytes | None:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(["apt-get", *options, "-q", "download", spec], cwd=tmp,
                                capture_output=True, check=False)
        debs = list(Path(tmp).glob("*.deb"))
        if result.returncode != 0 or not debs:
            return None
        return debs[0].read_bytes()


def _private_update(apt_dir: Path | None = None) -> None:
    apt_dir = apt_dir or APT_DIR
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", *private_apt_options(apt_dir), "-q", "update"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FetchError(f"apt-get update into {apt_dir} failed:\n{result.stderr[-2000:]}")


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
        raise FetchError("not a Debian package")
    members: dict[str, bytes] = {}
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
    return members


def extract_deb(deb: bytes, dest: Path, skip: tuple[str, ...] = ()) -> None:
    """Unpacks the package's files into ``dest`` as ``dpkg -x`` would (links included), except
    paths that start with one of ``skip``; a link that leaves ``dest`` is refused."""
    members = _ar_members(deb)
    data_name = next(name for name in members if name.startswith("data.tar"))
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as archive:
        chosen = [m for m in archive.getmembers()
                  if not m.name.removeprefix("./").startswith(skip)]
        archive.extractall(dest, members=chosen, filter="data")
