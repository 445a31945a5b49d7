"""The wheel installs the product only: no benchmark, measurement or setup code from tools/."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools.discovery import PackageFinder

ROOT = Path(__file__).resolve().parents[2]


def _installed_packages() -> list[str]:
    """What setuptools would install, found exactly as pyproject's packages.find says."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]
    return PackageFinder.find(
        where=str(ROOT), include=tuple(find["include"]), exclude=tuple(find.get("exclude", ()))
    )


def test_the_wheel_holds_no_tools_package():
    packages = _installed_packages()
    assert "speech_platform" in packages and "stt_service" in packages and "batcher" in packages
    assert not [p for p in packages if p == "tools" or p.startswith("tools.")], packages
    assert not [p for p in packages if p.endswith(".bench") or ".bench." in p], packages
    assert not [p for p in packages if p.startswith(("tests", "scripts"))], packages


def test_tools_is_excluded_even_if_an_include_pattern_grows():
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]
    assert "tools*" in find["exclude"]
    assert "tools.bench" not in PackageFinder.find(
        where=str(ROOT), include=("*",), exclude=tuple(find["exclude"])
    )


def test_no_console_script_points_into_tools():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "speech-bench" not in scripts
    assert not [s for s in scripts.values() if s.startswith("tools")], scripts


def test_no_installed_module_imports_tools():
    for package in _installed_packages():
        if package.startswith("speech.") or package == "speech":
            continue
        for path in (ROOT / package.replace(".", "/")).glob("*.py"):
            text = path.read_text()
            assert "from tools" not in text and "import tools" not in text, path
