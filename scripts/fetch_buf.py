"""Installs the `buf` CLI (protobuf lint and breaking-change checks) into .venv/bin.

buf is published on npm as per-platform packages holding the binary; the tarball is fetched
straight from the npm registry with its published sha512, so no npm or root is needed.
Idempotent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "1.75.0"
#: npm "dist.integrity" of each platform package (sha512, base64).
INTEGRITY = {
    "linux-x64": (
        "YGGJAx0lpMCE7aMWjNOJcfoEaG/e+iYHnTC4SZ0P5eS4IffMryA9Z4/bb1m1wNXAEJ8ATFMEZOAk/5x9VE47ig=="
    ),
}


def buf_path() -> Path:
    return ROOT / ".venv" / "bin" / "buf"


def _platform() -> str:
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "aarch64", "arm64": "aarch64"}
    return f"{sys.platform}-{machine.get(platform.machine().lower(), '?')}"


def install() -> Path:
    target = buf_path()
    if target.exists():
        return target
    plat = _platform()
    if plat not in INTEGRITY:
        raise SystemExit(f"buf: no pinned package for platform {plat}")
    url = f"https://registry.npmjs.org/@bufbuild/buf-{plat}/-/buf-{plat}-{VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY[plat]:
        raise SystemExit(f"buf: integrity mismatch for {url}")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("package/bin/buf")
        assert member is not None
        partial = target.with_suffix(".partial")
        partial.write_bytes(member.read())
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(f"buf: {install()}", file=sys.stderr)
