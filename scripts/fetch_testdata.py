"""Provides real recorded speech for the tests: Debian's pocketsphinx-testdata.

Uses the system copy when the package is installed; otherwise fetches the .deb without root
(``apt-get download``, or straight from the Debian archive), checks its SHA-256 and unpacks it
into .venv/share/testdata. Idempotent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_packages import deb_files, fetch_deb

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
    return fetch_deb("pocketsphinx-testdata=0.8+5prealpha+1-15", DEB_URL, DEB_SHA256)


def _install(deb: bytes) -> None:
    staging = LOCAL_DIR.with_name(LOCAL_DIR.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for relative, contents in deb_files(deb, "usr/share/pocketsphinx/test/data/"):
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(contents)
    shutil.rmtree(LOCAL_DIR, ignore_errors=True)
    staging.replace(LOCAL_DIR)


if __name__ == "__main__":
    print(f"test speech: {testdata_dir()}", file=sys.stderr)
