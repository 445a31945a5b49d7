"""Dependencies run one way: batcher <- speech_platform <- services <- speech_jobs and
speech_http <- speech_server.

An AST walk over every .py file of each package (scripts/import_graph.py, the same walk that
prints the import graph) finds every import at any depth: module level, inside functions,
under TYPE_CHECKING, ``importlib.import_module("...")``, and a string that is a dotted path
of one of our modules. Any upward one fails here, naming the file and line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("stt_service", "tts_service", "speech_jobs", "speech_http", "speech_server")

#: package -> the packages of ours it must never import (and no product code imports
#: tools/, which the wheel does not install).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "batcher": ("speech", "speech_platform", *SERVICES, "tools"),
    "speech_platform": (*SERVICES, "tools"),
    "stt_service": ("tts_service", "speech_jobs", "speech_http", "speech_server", "tools"),
    "tts_service": ("stt_service", "speech_jobs", "speech_http", "speech_server", "tools"),
    "speech_jobs": ("speech_http", "speech_server", "tools"),
    # The HTTP front door calls the services' cores; the composition root hosts it.
    "speech_http": ("speech_server", "tools"),
    "speech_server": ("tools",),
    # The client SDK ships alone: the generated stubs and grpc, nothing of the server.
    "speech_client": ("batcher", "speech_platform", *SERVICES, "tools"),
}


def _walker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


def upward_imports(root: Path, package: str) -> list[str]:
    """'file:line imports target (how)' for every forbidden import in ``package``."""
    walker = _walker()
    found = []
    for path in walker.python_files(root / package):
        relative = path.relative_to(root).as_posix()
        for imp in walker.module_imports(path, walker.dotted_package(root, path)):
            if imp.target.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{relative}:{imp.line} imports {imp.target} ({imp.how})")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    assert upward_imports(ROOT, package) == []


def test_an_upward_import_at_any_depth_is_caught(tmp_path: Path) -> None:
    """The walk sees an import inside a function, under TYPE_CHECKING, by importlib with a
    literal, and a module path kept in a string for a later importlib call."""
    kernel = tmp_path / "speech_platform"
    (kernel / "deep").mkdir(parents=True)
    (kernel / "__init__.py").write_text("")
    (kernel / "deep" / "__init__.py").write_text("")
    (kernel / "deep" / "bad.py").write_text(
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from tts_service.synthesizer import Synthesizer\n"
        "BUILDERS = {'jobs': 'speech_jobs.service'}\n"
        "def late():\n"
        "    from stt_service.transcriber import Transcriber\n"
        "    return importlib.import_module('speech_server.server'), Transcriber\n"
    )
    assert upward_imports(tmp_path, "speech_platform") == [
        "speech_platform/deep/bad.py:4 imports tts_service.synthesizer (top)",
        "speech_platform/deep/bad.py:5 imports speech_jobs.service (string)",
        "speech_platform/deep/bad.py:7 imports stt_service.transcriber (function)",
        "speech_platform/deep/bad.py:8 imports speech_server.server (string)",
    ]
