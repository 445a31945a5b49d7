"""Runs the installed ``speechctl`` against a test server."""

from __future__ import annotations

import subprocess

from tests.clients.conftest import TOKEN
from tests.support.server import ROOT, ServerProcess

SPEECHCTL = str(ROOT / ".venv" / "bin" / "speechctl")


def speechctl(server: ServerProcess, *args: str, token: str = TOKEN,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``speechctl --target SERVER --token TOKEN ARGS...`` (a later --target wins)."""
    return subprocess.run([SPEECHCTL, "--target", server.address, "--token", token, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
