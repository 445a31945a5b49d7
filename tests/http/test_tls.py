"""The HTTP door under the gRPC port's TLS settings: HTTPS with the server's certificate,
client certificates required when a client CA is set (mTLS), principals by bearer token."""

from __future__ import annotations

import ssl

import httpx
import pytest
import pytest_asyncio

from speech_platform.config import PrincipalSettings
from tests.http.conftest import http_server, http_settings
from tests.support.certificates import CertificateAuthority, Issued

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module")
async def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder / "ca", "speech-test-ca")
    server_cert = ca.issue("speech-server", server=True, stem="server")
    client = ca.issue("gateway")
    rogue = CertificateAuthority(folder / "rogue", "rogue-ca").issue("gateway")
    settings = http_settings(["tts"])
    settings.tts.engines = ["piper"]
    settings.tts.piper_instances = 1
    settings.server.tls.cert_file = str(server_cert.cert)
    settings.server.tls.key_file = str(server_cert.key)
    settings.server.tls.client_ca_file = str(ca.cert)
    settings.auth.principals = [PrincipalSettings(name="alice", token="alice-token")]
    async with http_server(settings) as (server, _):
        yield f"https://127.0.0.1:{server.server.http_port}", ca, client, rogue


def _context(ca: CertificateAuthority, client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


async def test_https_with_a_client_certificate_and_a_token(served):
    url, ca, client, _ = served
    async with httpx.AsyncClient(base_url=url, verify=_context(ca, client)) as http:
        response = await http.get(
            "/v1/audio/voices", headers={"authorization": "Bearer alice-token"}
        )
        assert response.status_code == 200
        assert "en_US-joe-medium" in {v["id"] for v in response.json()["data"]}
        # The certificate opens the connection; the token still names the caller.
        anonymous = await http.get("/v1/audio/voices")
        assert anonymous.status_code == 401


async def test_no_or_a_foreign_client_certificate_is_refused_in_the_handshake(served):
    url, ca, _, rogue = served
    for certificate in (None, rogue):
        async with httpx.AsyncClient(base_url=url, verify=_context(ca, certificate)) as http:
            with pytest.raises(httpx.HTTPError):
                await http.get("/healthz")


async def test_plain_http_is_not_served_on_a_tls_port(served):
    url, *_ = served
    async with httpx.AsyncClient(base_url=url.replace("https://", "http://")) as http:
        with pytest.raises(httpx.HTTPError):
            await http.get("/healthz")
