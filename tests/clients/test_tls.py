"""The clients' TLS options over a real handshake: server-authenticated TLS and mutual TLS
(a TLS terminator in front of the real server, see tls_terminator.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.check_report import assert_real_results, check_arguments, run_check
from tests.clients.conftest import EXPECTED_WORDS, TOKEN, has_words
from tests.clients.speechctl import speechctl
from tests.clients.tls_terminator import (
    Certificates,
    TlsTerminator,
    make_certificates,
    tls_terminator,
)
from tests.conftest import Clip
from tests.support.server import ServerProcess
from tools.clients import go, node


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def mutual_tls(client_server: ServerProcess, certificates: Certificates) -> Iterator[TlsTerminator]:
    with tls_terminator(client_server.address, certificates, mutual=True) as terminator:
        yield terminator


def tls_arguments(certificates: Certificates, client_certificate: bool = True) -> list[str]:
    arguments = ["--ca", str(certificates.ca)]
    if client_certificate:
        arguments += ["--cert", str(certificates.client_cert), "--key",
                      str(certificates.client_key)]
    return arguments


def test_speechctl_over_tls_checks_the_server_certificate(
    client_server: ServerProcess, certificates: Certificates, clip: Clip, tmp_path: Path
) -> None:
    with tls_terminator(client_server.address, certificates) as tls:
        secure = speechctl(client_server, "--target", tls.address,
                           *tls_arguments(certificates, client_certificate=False),
                           "transcribe", str(clip.path))
        assert secure.returncode == 0, secure.stderr
        assert has_words(secure.stdout)

        # A CA that did not sign the server's certificate: the handshake is refused.
        stranger = make_certificates(tmp_path)
        refused = speechctl(client_server, "--target", tls.address, "--timeout", "10",
                            "--retries", "0", "--ca", str(stranger.ca),
                            "transcribe", str(clip.path))
        assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr


def test_speechctl_over_mutual_tls_needs_its_certificate(
    client_server: ServerProcess, certificates: Certificates, mutual_tls: TlsTerminator,
    clip: Clip,
) -> None:
    accepted = speechctl(client_server, "--target", mutual_tls.address,
                         *tls_arguments(certificates), "stream", "--speed", "0",
                         "--mic-file", str(clip.path))
    assert accepted.returncode == 0, accepted.stderr
    assert has_words(accepted.stdout)

    refused_before = mutual_tls.refused_handshakes
    anonymous = speechctl(client_server, "--target", mutual_tls.address, "--timeout", "10",
                          "--retries", "0", *tls_arguments(certificates, False),
                          "transcribe", str(clip.path))
    assert anonymous.returncode == 1 and "UNAVAILABLE" in anonymous.stderr
    assert mutual_tls.refused_handshakes > refused_before


@pytest.fixture(scope="module", params=["go", "node"])
def check_program(request: pytest.FixtureRequest) -> list[str]:
    return [str(go.build())] if request.param == "go" else ["node", str(node.build())]


def test_go_and_node_clients_over_mutual_tls(
    check_program: list[str], certificates: Certificates, mutual_tls: TlsTerminator,
    clip: Clip, tmp_path: Path,
) -> None:
    arguments = check_arguments(mutual_tls.address, str(clip.path), EXPECTED_WORDS, TOKEN)
    report = run_check([*check_program, *arguments, *tls_arguments(certificates)])
    assert_real_results(report)

    # They verify the server: with a CA that did not sign its certificate, every call fails.
    stranger = make_certificates(tmp_path)
    refused = subprocess.run([*check_program, *arguments, "--ca", str(stranger.ca)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["failures"]
