"""Installs the `buf` CLI (protobuf lint and breaking-change checks) into .venv/bin.

buf is published on npm as ``@bufbuild/buf``, whose binary lives in a per-platform package
(``@bufbuild/buf-linux-x64``, ...). That package is fetched by name with ``npm pack`` (the
registry is npm's configured one), checked against its pinned npm ``integrity`` (sha512) and
only ``package/bin/buf`` is extracted. No root is needed. Idempotent.
``python -m tools.fetch.buf``.
"""

from __future__ import annotations

import os
import platform
import sys
import tarfile
from pathlib import Path

from tools.fetch import ROOT, FetchError
from tools.fetch.npm import npm_pack

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
        raise FetchError(f"buf: no pinned package for platform {plat}")
    tarball = npm_pack(f"@bufbuild/buf-{plat}", VERSION, INTEGRITY[plat])
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/bin/buf")
        if member is None:
            raise FetchError(f"{tarball}: package/bin/buf is missing")
        partial = target.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(member.read())
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(f"buf: {install()}", file=sys.stderr)
