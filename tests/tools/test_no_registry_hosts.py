"""No registry host name anywhere in the repository: packages are fetched by name through
the registries' own clients (pip/uv, ``apt-get download``, ``npm pack``), so the registry is
the machine's configuration, not ours."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Assembled so that this file does not name them itself.
HOSTS = [
    ".".join(parts) for parts in (
        ("npmjs", "org"), ("npmjs", "com"), ("registry", "npm"), ("registry", "yarnpkg"),
        ("deb", "debian", "org"), ("debian", "org"), ("security", "debian"),
        ("snapshot", "debian"), ("ftp", "debian"), ("pypi", "org"), ("pypi", "python", "org"),
        ("files", "pythonhosted"), ("pythonhosted", "org"), ("packages", "cloud", "google"),
        ("deb", "nodesource"), ("archive", "ubuntu", "com"), ("dl-cdn", "alpinelinux"),
    )
]


def test_no_file_of_the_repository_names_a_registry_host():
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.splitlines()
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(errors="ignore").lower()
        except OSError:
            continue
        found += [f"{name}: {host}" for host in HOSTS if host in text]
    assert found == []
