"""Principals, priority entitlement, job ownership and TLS / mTLS on one real server.

The server (in this process, on loopback) serves TTS (Piper) and jobs over mTLS: every
client presents a certificate from the test CA; bearer tokens name principals on top.
Clients are grpc.aio channels and the grpcurl binary."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speech.v1 import jobs_pb2, jobs_pb2_grpc
from speech_platform.config import PrincipalSettings
from speech_platform.priority import HIGH, NORMAL
from tests.jobs.ownership import bearer, check_ownership
from tests.support.certificates import CertificateAuthority, Issued
from tests.support.probe import ProbeService, who_am_i
from tests.support.server import ROOT, RunningServer, running_server
from tests.support.server import test_settings as server_settings

GRPCURL = ROOT / ".venv" / "bin" / "grpcurl"
VIP_ENV = "SPEECH_TEST_VIP_TOKEN"


@dataclass
class Pki:
    ca: CertificateAuthority
    server: Issued
    gateway: Issued  # a client certificate whose CN names no configured principal
    carol: Issued  # CN carol-laptop, which the principals file maps to carol
    rogue: Issued  # signed by a CA the server does not trust
    other_ca: CertificateAuthority


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder / "ca", "speech-test-ca")
    other = CertificateAuthority(folder / "other", "rogue-ca")
    return Pki(
        ca=ca,
        server=ca.issue("speech-server", server=True, stem="server"),
        gateway=ca.issue("gateway"),
        carol=ca.issue("carol-laptop"),
        rogue=other.issue("alice"),
        other_ca=other,
    )


@pytest.fixture(scope="module")
def vip_token() -> Iterator[str]:
    os.environ[VIP_ENV] = "vip-token"
    yield "vip-token"
    del os.environ[VIP_ENV]


@pytest.fixture(scope="module")
async def server(
    pki: Pki, vip_token: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    settings = server_settings(["tts", "jobs"])
    settings.tts.engines = ["piper"]
    settings.jobs.backend = "local"
    settings.server.tls.cert_file = str(pki.server.cert)
    settings.server.tls.key_file = str(pki.server.key)
    settings.server.tls.client_ca_file = str(pki.ca.cert)
    settings.server.auth_tokens = ["legacy-token"]
    settings.server.health_port = 0  # plaintext health for kubelet probes
    settings.auth.principals = [
        PrincipalSettings(name="alice", token="alice-token"),
        PrincipalSettings(
            name="bob", token_sha256=hashlib.sha256(b"bob-token").hexdigest()
        ),
        PrincipalSettings(name="vip", token_env=VIP_ENV, max_priority="high"),
        PrincipalSettings(name="ops", token="ops-token", roles=["admin"]),
    ]
    principals_file = tmp_path_factory.mktemp("secrets") / "principals.yaml"
    principals_file.write_text(
        "- {name: carol, cert_common_name: carol-laptop, max_priority: high}\n"
    )
    settings.auth.principals_file = str(principals_file)
    async with running_server(settings, extra_services=[ProbeService()]) as running:
        yield running


def tls_channel(
    server: RunningServer, client: Issued | None, trust: Path
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=trust.read_bytes(),
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )
    return grpc.aio.secure_channel(f"localhost:{server.server.port}", credentials)


@pytest.fixture
async def channel(server: RunningServer, pki: Pki) -> AsyncIterator[grpc.aio.Channel]:
    async with tls_channel(server, pki.gateway, pki.ca.cert) as opened:
        yield opened


async def test_each_credential_names_its_principal(
    server: RunningServer, pki: Pki, channel: grpc.aio.Channel, vip_token: str
) -> None:
    for token, name in [
        ("alice-token", "alice"),  # token in the config
        ("bob-token", "bob"),  # only its SHA-256 in the config
        (vip_token, "vip"),  # from the environment
        ("ops-token", "ops"),
    ]:
        assert (await who_am_i(channel, token))["caller"] == f"principal:{name}"
    legacy = "token-" + hashlib.sha256(b"legacy-token").hexdigest()[:12]
    assert (await who_am_i(channel, "legacy-token"))["caller"] == f"principal:{legacy}"
    assert (await who_am_i(channel, "ops-token"))["admin"] is True
    assert (await who_am_i(channel, "alice-token"))["admin"] is False
    # no token: the client certificate's CN names the principal
    assert (await who_am_i(channel))["caller"] == "principal:gateway"
    async with tls_channel(server, pki.carol, pki.ca.cert) as carol:
        assert (await who_am_i(carol))["caller"] == "principal:carol"
    # a wrong or malformed token is refused, even over a good certificate
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await who_am_i(channel, "guessed-token")
    assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await channel.unary_unary("/speech.test.Probe/WhoAmI")(
            b"", metadata=(("authorization", "Basic YWxpY2U="),)
        )
    assert malformed.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_high_priority_is_granted_by_configuration_not_by_asking(
    server: RunningServer, pki: Pki, channel: grpc.aio.Channel, vip_token: str
) -> None:
    """Every caller below asks for PRIORITY_HIGH; only those entitled are served at it."""
    assert (await who_am_i(channel, "alice-token"))["high_served_at"] == NORMAL
    assert (await who_am_i(channel, "legacy-token"))["high_served_at"] == NORMAL
    assert (await who_am_i(channel))["high_served_at"] == NORMAL  # unlisted certificate
    assert (await who_am_i(channel, vip_token))["high_served_at"] == HIGH
    async with tls_channel(server, pki.carol, pki.ca.cert) as carol:
        assert (await who_am_i(carol))["high_served_at"] == HIGH


async def test_jobs_belong_to_their_owner_on_the_local_backend(
    channel: grpc.aio.Channel,
) -> None:
    await check_ownership(
        jobs_pb2_grpc.JobsStub(channel), "alice-token", "bob-token", "ops-token", "nightly"
    )


async def test_health_stays_open_and_jobs_need_a_principal_with_auth(
    channel: grpc.aio.Channel,
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="speech.v1.Jobs"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    listed = await jobs_pb2_grpc.JobsStub(channel).ListJobs(
        jobs_pb2.ListJobsRequest(), metadata=bearer("alice-token")
    )
    assert all(job.owner == "alice" for job in listed.jobs)


async def test_connections_without_a_trusted_client_certificate_are_refused(
    server: RunningServer, pki: Pki
) -> None:
    async def refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
        async with channel:
            health = health_pb2_grpc.HealthStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            return caught.value.code()

    plaintext = grpc.aio.insecure_channel(f"127.0.0.1:{server.server.port}")
    assert await refused(plaintext) == grpc.StatusCode.UNAVAILABLE
    no_certificate = tls_channel(server, None, pki.ca.cert)
    assert await refused(no_certificate) == grpc.StatusCode.UNAVAILABLE
    rogue_certificate = tls_channel(server, pki.rogue, pki.ca.cert)
    assert await refused(rogue_certificate) == grpc.StatusCode.UNAVAILABLE
    # and a client that does not trust the server's CA does not talk to it
    wrong_trust = tls_channel(server, pki.gateway, pki.other_ca.cert)
    assert await refused(wrong_trust) == grpc.StatusCode.UNAVAILABLE


async def test_the_plaintext_health_port_answers_health_and_nothing_else(
    server: RunningServer,
) -> None:
    """Kubernetes' gRPC probes speak no TLS: they get health on a port of its own, which
    serves no speech service and no reflection."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.server.health_port}") as probe:
        health = health_pb2_grpc.HealthStub(probe)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="speech.v1.Jobs"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await jobs_pb2_grpc.JobsStub(probe).ListJobs(
                jobs_pb2.ListJobsRequest(), metadata=bearer("ops-token")
            )
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def grpcurl(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    # A refused handshake makes grpcurl retry until its connect timeout (10 s by default).
    return subprocess.run(
        [str(GRPCURL), "-connect-timeout", "3", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


async def test_grpcurl_over_mtls(server: RunningServer, pki: Pki) -> None:
    address = f"localhost:{server.server.port}"
    tls = ["-cacert", str(pki.ca.cert), "-cert", str(pki.gateway.cert),
           "-key", str(pki.gateway.key)]
    listed = await asyncio.to_thread(grpcurl, server, *tls, address, "list")
    assert listed.returncode == 0, listed.stderr
    assert "speech.v1.Jobs" in listed.stdout.split()
    jobs = await asyncio.to_thread(
        grpcurl, server, *tls, "-H", "authorization: Bearer alice-token",
        "-d", "{}", address, "speech.v1.Jobs/ListJobs",
    )
    assert jobs.returncode == 0, jobs.stderr
    assert all(job["owner"] == "alice" for job in json.loads(jobs.stdout).get("jobs", []))
    plaintext = await asyncio.to_thread(grpcurl, server, "-plaintext", address, "list")
    assert plaintext.returncode != 0
    assert "Failed to dial" in plaintext.stderr  # refused at the connection, not later
    no_cert = await asyncio.to_thread(
        grpcurl, server, "-cacert", str(pki.ca.cert), address, "list"
    )
    assert no_cert.returncode != 0
    assert "Failed to dial" in no_cert.stderr
    rogue = await asyncio.to_thread(
        grpcurl, server, "-cacert", str(pki.ca.cert), "-cert", str(pki.rogue.cert),
        "-key", str(pki.rogue.key), address, "list",
    )
    assert rogue.returncode != 0
    assert "Failed to dial" in rogue.stderr


async def test_the_jobs_cli_over_mtls_with_a_token(server: RunningServer, pki: Pki) -> None:
    """speech-jobs (a real process) with --cacert/--cert/--key and a token: it submits as
    alice, and sees only alice's jobs."""
    cli = [str(ROOT / ".venv" / "bin" / "speech-jobs"), "--server",
           f"localhost:{server.server.port}", "--cacert", str(pki.ca.cert),
           "--cert", str(pki.gateway.cert), "--key", str(pki.gateway.key), "--token",
           "alice-token"]

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], input=stdin, capture_output=True, text=True,
                              timeout=120, check=False)

    submitted = await asyncio.to_thread(
        run, "submit-synthesis", "-", "--job-id", "from-cli", "--no-watch",
        stdin="Hello from the command line.\n",
    )
    assert submitted.returncode == 0, submitted.stderr
    listed = await asyncio.to_thread(run, "--json", "list")
    assert listed.returncode == 0, listed.stderr
    owners = re.findall(r'"owner": "([^"]*)"', listed.stdout)  # one pretty JSON per job
    assert owners and set(owners) == {"alice"}
    assert '"jobId": "from-cli"' in listed.stdout
    plaintext = await asyncio.to_thread(
        subprocess.run,
        [cli[0], "--server", f"localhost:{server.server.port}", "list"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert plaintext.returncode == 2 and "UNAVAILABLE" in plaintext.stderr


async def test_a_rotated_server_certificate_is_served_without_a_restart(
    server: RunningServer, pki: Pki, tmp_path: Path
) -> None:
    """Runs last in this module: it replaces the server's certificate files in place,
    as a Secret rotation or cert-manager renewal does."""
    renewed_ca = CertificateAuthority(tmp_path / "renewed", "renewed-ca")
    renewed = renewed_ca.issue("speech-server", server=True)
    pki.server.key.write_bytes(renewed.key_pem)
    pki.server.cert.write_bytes(renewed.cert_pem)
    async with tls_channel(server, pki.gateway, renewed_ca.cert) as fresh:
        health = health_pb2_grpc.HealthStub(fresh)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    async with tls_channel(server, pki.gateway, pki.ca.cert) as stale:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(stale).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
