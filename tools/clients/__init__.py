"""Builds the Node and Go clients of speech.v1 from protos/ (``python -m tools.clients``).

Nothing generated is committed: each builder generates its stubs from every .proto under
protos/ (so a new service or RPC appears without work), compiles the client and its check
program, and records a stamp of its inputs so a second run with nothing changed does nothing.
Toolchains come from package registries by name (npm ci with a lock file, Debian packages via
``apt-get download``) and are kept under .venv, like every other download of the setup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tools.fetch import ROOT

PROTO_ROOT = ROOT / "protos"
#: Build output of the clients (git-ignored, like /build as a whole).
BUILD_DIR = ROOT / "build" / "clients"
TOOLCHAINS = ROOT / ".venv" / "toolchains"


def proto_files() -> list[str]:
    """Every .proto under protos/, relative to it (the import paths protoc expects)."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def inputs_hash(files: Iterable[Path], *extra: str) -> str:
    """A short digest of file names and contents (and ``extra`` strings): the build stamp."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:16]


def stamp_matches(stamp: Path, value: str) -> bool:
    return stamp.is_file() and stamp.read_text() == value
