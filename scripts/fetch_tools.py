"""Provides promtool, which the deployment tests use to check and unit-test the alert rules.

Uses a promtool already on PATH (the Debian ``prometheus`` package installs one); otherwise
fetches Debian's ``prometheus`` .deb without root (``apt-get download``, or straight from the
Debian archive with a pinned SHA-256) and extracts only ``usr/bin/promtool`` into .venv/bin.
Nothing else of the package is installed and no service is started. Idempotent.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_PROMTOOL = ROOT / ".venv" / "bin" / "promtool"
DEB_VERSION = "2.42.0+ds-5+deb12u1"
#: Debian bookworm's build, the same bytes apt-get fetches; only amd64 is pinned here, other
#: architectures rely on apt's own signature checks.
DEB_SHA256 = {"amd64": "81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"}
DEB_POOL = "http://deb.debian.org/debian/pool/main/p/prometheus"
MEMBER = "usr/bin/promtool"


def promtool_path() -> Path:
    """An executable promtool, fetching it into .venv/bin on first use."""
    if LOCAL_PROMTOOL.exists():
        return LOCAL_PROMTOOL
    system = shutil.which("promtool")
    if system:
        return Path(system)
    _install(_fetch_deb(_debian_arch()))
    return LOCAL_PROMTOOL


def _debian_arch() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise SystemExit(f"no Debian prometheus package known for {machine}; install promtool")
    return arch


def _fetch_deb(arch: str) -> bytes:
    expected = DEB_SHA256.get(arch)
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("apt-get"):
            result = subprocess.run(
                ["apt-get", "download", f"prometheus:{arch}={DEB_VERSION}"],
                cwd=tmp,
                capture_output=True,
                check=False,
            )
            debs = list(Path(tmp).glob("*.deb"))
            if result.returncode == 0 and debs:
                data = debs[0].read_bytes()
                if expected is None or hashlib.sha256(data).hexdigest() == expected:
                    return data
    if expected is None:
        raise SystemExit(f"apt-get could not download prometheus for {arch}; install promtool")
    url = f"{DEB_POOL}/prometheus_{DEB_VERSION}_{arch}.deb"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != expected:
        raise SystemExit(f"{url}: checksum mismatch")
    return data


def _ar_members(data: bytes) -> dict[str, bytes]:
    """A .deb is an ar archive: 8-byte magic, then 60-byte headers each followed by data."""
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


def _install(deb: bytes) -> None:
    members = _ar_members(deb)
    data_name = next(name for name in members if name.startswith("data.tar"))
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as archive:
        member = next(
            (m for m in archive.getmembers() if m.name.lstrip("./") == MEMBER and m.isfile()),
            None,
        )
        if member is None:
            raise SystemExit(f"{MEMBER} is not in the prometheus package")
        source = archive.extractfile(member)
        assert source is not None
        binary = source.read()
    LOCAL_PROMTOOL.parent.mkdir(parents=True, exist_ok=True)
    partial = LOCAL_PROMTOOL.with_name(LOCAL_PROMTOOL.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, LOCAL_PROMTOOL)  # atomic: a half-written binary is never found


if __name__ == "__main__":
    print(f"promtool: {promtool_path()}", file=sys.stderr)
