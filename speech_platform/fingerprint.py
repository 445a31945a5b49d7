"""Cheap, stable identities of what produces an output: model files and library versions.

Response-cache keys include them (STT and TTS), so an entry made by other weights, another
engine release or another numeric setup is never served for this one.

``files_digest`` reads at most 3 MiB per file (its start, middle and end) plus every
file's name and size, so a multi-GiB model costs milliseconds at load, yet any re-export,
quantisation or fine-tune (which rewrite the headers and tensors throughout) changes it.
It deliberately leaves out modification times: replicas that unpacked the same image or
package at different moments must share one cache.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

#: Bytes read at the start, the middle and the end of each file.
SAMPLE_BYTES = 1 << 20


def files_digest(path: Path) -> str:
    """SHA-256 (hex) over a file, or a directory's files in name order (see module doc)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        size = file.stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        with file.open("rb") as stream:
            for offset in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2),
                                  max(0, size - SAMPLE_BYTES)}):
                stream.seek(offset)
                digest.update(stream.read(SAMPLE_BYTES))
    return digest.hexdigest()


def versions_of(*distributions: str) -> str:
    """"name version" of each installed distribution, e.g. "ctranslate2 4.6.0".

    >>> versions_of("pydantic").startswith("pydantic ")
    True
    """
    parts = []
    for name in distributions:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)
