"""Provides real recorded speech for the tests: Debian's pocketsphinx-testdata.

Uses the system copy when the package is installed; otherwise fetches the .deb without root
(``apt-get download``, see tools/fetch/debian.py), checks its SHA-256 and unpacks it into
.venv/share/testdata. Idempotent. ``python -m tools.fetch.testdata``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tools.fetch import ROOT
from tools.fetch.debian import deb_files, fetch_deb

SYSTEM_DIR = Path("/usr/share/pocketsphinx/test/data")
LOCAL_DIR = ROOT / ".venv" / "share" / "testdata" / "pocketsphinx"
DEB_PACKAGE = "pocketsphinx-testdata"
DEB_VERSION = "0.8+5prealpha+1-15"
DEB_SHA256 = "eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0"


def testdata_dir() -> Path:
    """The folder with librivox/ and goforward.raw, fetching it on first use."""
    if (SYSTEM_DIR / "librivox" / "transcription").exists():
        return SYSTEM_DIR
    if not (LOCAL_DIR / "librivox" / "transcription").exists():
        _install(fetch_deb(DEB_PACKAGE, DEB_VERSION, DEB_SHA256))
    return LOCAL_DIR


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
