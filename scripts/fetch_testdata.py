"""Provides real recorded speech for the tests: Debian's pocketsphinx-testdata.

Uses the system copy when the package is installed; otherwise fetches the .deb without root
(``apt-get download``, or straight from the Debian archive), checks its SHA-256 and unpacks it
into .venv/share/testdata. Idempotent.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_DIR = Path("/usr/share/pocketsphinx/test/data")
LOCAL_DIR = ROOT / ".venv" / "share" / "testdata" / "pocketsphinx"
DEB_NAME = "pocketsphinx-testdata_0.8+5prealpha+1-15_all.deb"
DEB_SHA256 = "eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0"
DEB_URL = f"http://deb.debian.org/debian/pool/main/p/pocketsphinx/{DEB_NAME}"


def testdata_dir() -> Path:
    """The folder with librivox/ and goforward.raw, fetching it on first use."""
    if (SYSTEM_DIR / "librivox" / "transcription").exists():
        return SYSTEM_DIR
    if not (LOCAL_DIR / "librivox" / "transcription").exists():
        _install(_fetch_deb())
    return LOCAL_DIR


def _fetch_deb() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("apt-get"):
            result = subprocess.run(
                ["apt-get", "download", "pocketsphinx-testdata=0.8+5prealpha+1-15"],
                cwd=tmp,
                capture_output=True,
                check=False,
            )
            debs = list(Path(tmp).glob("*.deb"))
            if result.returncode == 0 and debs:
                data = debs[0].read_bytes()
                if hashlib.sha256(data).hexdigest() == DEB_SHA256:
                    return data
    with urllib.request.urlopen(DEB_URL, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != DEB_SHA256:
        raise SystemExit(f"{DEB_URL}: checksum mismatch")
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
    prefix = "./usr/share/pocketsphinx/test/data/"
    staging = LOCAL_DIR.with_name(LOCAL_DIR.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            target = staging / member.name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    shutil.rmtree(LOCAL_DIR, ignore_errors=True)
    staging.replace(LOCAL_DIR)


if __name__ == "__main__":
    print(f"test speech: {testdata_dir()}", file=sys.stderr)
