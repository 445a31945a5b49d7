"""The Go client, built from protos/ by tools/clients/go.py, calls the real server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.clients.check_report import assert_real_results, check_arguments, run_check
from tests.clients.conftest import EXPECTED_WORDS, TOKEN, proto_services
from tests.conftest import Clip
from tests.support.server import ServerProcess
from tools.clients import go


@pytest.fixture(scope="module")
def check_binary() -> Path:
    return go.build()


def test_the_go_client_transcribes_and_synthesizes(
    check_binary: Path, client_server: ServerProcess, clip: Clip
) -> None:
    # Go's flag package takes -name value; the shared arguments use --name, which it accepts.
    arguments = check_arguments(client_server.address, str(clip.path), EXPECTED_WORDS, TOKEN)
    assert_real_results(run_check([str(check_binary), *arguments]))


def test_the_go_client_is_refused_with_a_wrong_token(
    check_binary: Path, client_server: ServerProcess, clip: Clip
) -> None:
    arguments = check_arguments(client_server.address, str(clip.path), EXPECTED_WORDS, "wrong")
    result = subprocess.run([str(check_binary), *arguments], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert "PermissionDenied" in result.stdout


def test_go_stubs_cover_every_service_in_protos(check_binary: Path) -> None:
    generated = "".join(p.read_text() for p in go.GOPATH.rglob("*_grpc.pb.go"))
    for service in proto_services():
        assert f"func New{service.name}Client(" in generated
        for rpc in service.rpcs:
            assert f"/speech.v1.{service.name}/{rpc}" in generated


def test_go_sources_are_gofmt_clean(check_binary: Path) -> None:
    listed = subprocess.run([str(go.go_tool("gofmt")), "-l", str(go.SOURCE_DIR)],
                            capture_output=True, text=True, check=True)
    assert listed.stdout == ""
