"""Provides promtool, which the deployment tests use to check and unit-test the alert rules.

Uses a promtool already on PATH (the Debian ``prometheus`` package installs one); otherwise
fetches Debian's ``prometheus`` .deb without root (``apt-get download``, see
tools/fetch/debian.py; pinned SHA-256) and extracts only ``usr/bin/promtool`` into .venv/bin.
Nothing else of the package is installed and no service is started. Idempotent.
``python -m tools.fetch.promtool``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tools.fetch import ROOT
from tools.fetch.debian import deb_files, debian_arch, fetch_deb

LOCAL_PROMTOOL = ROOT / ".venv" / "bin" / "promtool"
DEB_VERSION = "2.42.0+ds-5+deb12u1"
#: Debian bookworm's build; only amd64 is pinned here, other architectures rely on apt's own
#: signature checks.
DEB_SHA256 = {"amd64": "81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"}
MEMBER = "usr/bin/promtool"


def promtool_path() -> Path:
    """An executable promtool, fetching it into .venv/bin on first use."""
    if LOCAL_PROMTOOL.exists():
        return LOCAL_PROMTOOL
    system = shutil.which("promtool")
    if system:
        return Path(system)
    _install(_fetch_deb(debian_arch("prometheus (promtool)")))
    return LOCAL_PROMTOOL


def _fetch_deb(arch: str) -> bytes:
    return fetch_deb("prometheus", DEB_VERSION, DEB_SHA256.get(arch), arch=arch)


def _install(deb: bytes) -> None:
    binary = next((data for name, data in deb_files(deb, MEMBER) if name == ""), None)
    if binary is None:
        raise SystemExit(f"{MEMBER} is not in the prometheus package")
    LOCAL_PROMTOOL.parent.mkdir(parents=True, exist_ok=True)
    partial = LOCAL_PROMTOOL.with_name(LOCAL_PROMTOOL.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, LOCAL_PROMTOOL)  # atomic: a half-written binary is never found


if __name__ == "__main__":
    print(f"promtool: {promtool_path()}", file=sys.stderr)
