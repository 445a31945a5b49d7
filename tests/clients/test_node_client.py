"""The Node client, typed by code generated from protos/ (tools/clients/node.py), calls the
real server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.clients.check_report import assert_real_results, check_arguments, run_check
from tests.clients.conftest import EXPECTED_WORDS, TOKEN, proto_services
from tests.conftest import Clip
from tests.support.server import ServerProcess
from tools.clients import node


@pytest.fixture(scope="module")
def check_script() -> Path:
    return node.build()


def test_the_node_client_transcribes_and_synthesizes(
    check_script: Path, client_server: ServerProcess, clip: Clip
) -> None:
    arguments = check_arguments(client_server.address, str(clip.path), EXPECTED_WORDS, TOKEN)
    assert_real_results(run_check(["node", str(check_script), *arguments]))


def test_the_node_client_is_refused_with_a_wrong_token(
    check_script: Path, client_server: ServerProcess, clip: Clip
) -> None:
    arguments = check_arguments(client_server.address, str(clip.path), EXPECTED_WORDS, "wrong")
    result = subprocess.run(["node", str(check_script), *arguments], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "PERMISSION_DENIED" in result.stdout


def test_node_types_cover_every_service_in_protos(check_script: Path) -> None:
    for service in proto_services():
        generated = (node.GENERATED / "speech" / "v1" / f"{service.name}.ts").read_text()
        for rpc in service.rpcs:
            assert f"  {rpc}(" in generated


def test_the_lock_file_names_no_registry() -> None:
    """npm takes the registry from the machine's configuration, never from the repository."""
    lock = (node.NODE_DIR / "package-lock.json").read_text()
    assert '"resolved"' not in lock
    assert '"integrity": "sha512-' in lock
