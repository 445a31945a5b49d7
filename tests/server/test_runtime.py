"""The server runtime around a real service (STT with tiny.en): health, reflection with
grpcurl itself, auth, limits, deadlines, overload, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from threadpoolctl import threadpool_info

from speech.v1 import stt_pb2, stt_pb2_grpc
from speech_platform.service import SpeechService
from stt_service.service import SpeechToTextService
from tests.conftest import Clip
from tests.support.server import (
    ROOT,
    RunningServer,
    fetch_metrics,
    metric_samples,
    running_server,
    server_process,
    test_settings,
)

GRPCURL = str(ROOT / ".venv" / "bin" / "grpcurl")
STT = "speech.v1.SpeechToText"


async def grpcurl(
    address: str, *args: str, data: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs grpcurl off the event loop (the server under test shares this loop)."""
    command = [GRPCURL, "-plaintext"]
    if data is not None:
        command += ["-d", "@"]
    return await asyncio.to_thread(
        subprocess.run,
        [*command, address, *args],
        input=data, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
async def stt_server() -> AsyncIterator[RunningServer]:
    async with running_server(services=["stt"]) as server:
        yield server


def wav_request(clip: Clip, **config: Any) -> stt_pb2.TranscribeRequest:
    return stt_pb2.TranscribeRequest(
        config=stt_pb2.RecognitionConfig(**config), audio=clip.path.read_bytes()
    )


async def test_grpcurl_lists_describes_and_checks_health(stt_server: RunningServer) -> None:
    listed = await grpcurl(stt_server.address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {STT, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
            "grpc.reflection.v1.ServerReflection"} <= services

    described = await grpcurl(stt_server.address, "describe", STT)
    assert described.returncode == 0, described.stderr
    assert "rpc Transcribe ( .speech.v1.TranscribeRequest )" in described.stdout
    message = await grpcurl(stt_server.address, "describe", "speech.v1.RecognitionConfig")
    assert message.returncode == 0, message.stderr
    assert "enable_word_time_offsets" in message.stdout

    for service in ("", STT):
        health = await grpcurl(stt_server.address, "grpc.health.v1.Health/Check",
                         data=json.dumps({"service": service}))
        assert health.returncode == 0, health.stderr
        assert json.loads(health.stdout)["status"] == "SERVING"


async def test_grpcurl_transcribes_a_file(
    stt_server: RunningServer, librivox_clips: list[Clip]
) -> None:
    clip = librivox_clips[1]  # "he was not an ill disposed young man"
    payload = json.dumps({"audio": base64.b64encode(clip.path.read_bytes()).decode()})
    result = await grpcurl(stt_server.address, f"{STT}/Transcribe", data=payload)
    assert result.returncode == 0, result.stderr
    text = json.loads(result.stdout)["text"].lower()
    assert text.startswith("he was not an") and "young man" in text


async def test_health_watch_streams_the_status(stt_server: RunningServer) -> None:
    """Watch writes with context.write (not a generator): the interceptor must pass it on."""
    async with stt_server.channel() as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=STT)
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


async def test_a_started_server_runs_blas_on_its_callers_thread(
    stt_server: RunningServer,
) -> None:
    """NumPy's OpenBLAS would otherwise keep a spinning worker per core (native_threads)."""
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert blas and {lib["num_threads"] for lib in blas} == {1}


async def test_reflection_v1_answers_like_v1alpha(stt_server: RunningServer) -> None:
    """grpcurl 1.8 speaks v1alpha; newer tools speak v1. Both must list the services."""
    async with stt_server.channel() as channel:
        for package in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
            call = channel.stream_stream(
                f"/{package}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            responses = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = [s.name async for r in responses for s in r.list_services_response.service]
            assert STT in names, (package, names)


async def test_oversized_message_is_refused_and_the_server_keeps_serving(
    librivox_clips: list[Clip],
) -> None:
    settings = test_settings(["stt"])
    settings.server.max_receive_message_bytes = 1024 * 1024
    async with running_server(settings) as server, server.channel(
        **{"grpc.max_send_message_length": 64 * 1024 * 1024}
    ) as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Transcribe(stt_pb2.TranscribeRequest(audio=b"\0" * (2 * 1024 * 1024)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        response = await stub.Transcribe(wav_request(librivox_clips[4]))
        assert "amiable" in response.text.lower()


async def test_auth_tokens_guard_the_speech_services_but_not_health(
    librivox_clips: list[Clip],
) -> None:
    settings = test_settings(["stt"])
    settings.server.auth_tokens = ["s3cret"]
    async with running_server(settings) as server, server.channel() as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ListModels(stt_pb2.ListModelsRequest())
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await stub.ListModels(
                stt_pb2.ListModelsRequest(), metadata=(("authorization", "Bearer nope"),)
            )
        assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
        models = await stub.ListModels(
            stt_pb2.ListModelsRequest(), metadata=(("authorization", "Bearer s3cret"),)
        )
        assert models.models
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=STT))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_full_queue_answers_resource_exhausted_with_retry_info(
    librivox_clips: list[Clip],
) -> None:
    settings = test_settings(["stt"])
    settings.stt.instances = 1
    settings.stt.batcher.max_queue_size = 1
    settings.stt.batcher.max_batch_size = 1
    async with running_server(settings) as server, server.channel() as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        request = wav_request(librivox_clips[0], skip_cache=True)
        outcomes = await asyncio.gather(
            *(stub.Transcribe(request) for _ in range(8)), return_exceptions=True
        )
        served = [o for o in outcomes if isinstance(o, stt_pb2.TranscribeResponse)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert served and refused and len(served) + len(refused) == 8
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = dict(error.trailing_metadata() or ())
            status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
            retry = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(retry)
            assert retry.retry_delay.seconds + retry.retry_delay.nanos > 0
        for response in served:
            assert "dashwood" in response.text.lower()
        # and it recovers
        assert "dashwood" in (await stub.Transcribe(request)).text.lower()


async def test_requests_whose_deadline_passes_in_the_queue_are_never_computed(
    librivox_clips: list[Clip],
) -> None:
    """One instance, one item per batch: requests sent behind five clips of work are
    queued FIFO for seconds, so a 0.5 s deadline always passes while they wait."""
    settings = test_settings(["stt"])
    settings.stt.instances = 1
    settings.stt.batcher.max_batch_size = 1
    # The queue-expiry path: with admission (tests/batcher/test_admission.py) these
    # requests would be refused on arrival instead of waiting.
    settings.stt.batcher.admission = False
    async with running_server(settings) as server, server.channel() as channel:
        stub = stt_pb2_grpc.SpeechToTextStub(channel)
        before = await server.metrics_text()
        busy = [
            asyncio.ensure_future(stub.Transcribe(wav_request(c, skip_cache=True)))
            for c in librivox_clips
        ]
        stt = server.server.context.services["stt"]
        assert isinstance(stt, SpeechToTextService)
        batcher = stt.transcriber.model().batcher
        async with asyncio.timeout(60):  # bounded wait for a condition, not a fixed sleep
            while batcher.running + batcher.pending < len(busy):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        late = [
            stub.Transcribe(wav_request(librivox_clips[0], skip_cache=True), timeout=0.5)
            for _ in range(6)
        ]
        late_outcomes = await asyncio.gather(*late, return_exceptions=True)
        busy_outcomes = await asyncio.gather(*busy, return_exceptions=True)
        after = await server.metrics_text()
    for outcome in late_outcomes:
        assert isinstance(outcome, grpc.aio.AioRpcError)
        assert outcome.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert all(isinstance(o, stt_pb2.TranscribeResponse) for o in busy_outcomes)
    computed = metric_samples(after, "speech_batcher_batch_size_sum") - metric_samples(
        before, "speech_batcher_batch_size_sum"
    )
    # only the busy ones' windows were computed; the late ones expired or were withdrawn
    assert computed == len(busy)
    dropped = sum(
        metric_samples(after, "speech_batcher_rejections_total", reason=r)
        - metric_samples(before, "speech_batcher_rejections_total", reason=r)
        for r in ("deadline", "cancelled")
    )
    # most die waiting in the queue (withdrawn there); one may die earlier, while decoding
    assert 1 <= dropped <= len(late)


class _GatedService:
    """The real STT service, whose model loading waits until the test lets it go."""

    def __init__(self, inner: SpeechService, gate: asyncio.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.name = inner.name
        self.grpc_service_names = inner.grpc_service_names

    def register(self, server: grpc.aio.Server) -> None:
        self.inner.register(server)

    async def start(self) -> None:
        await self.gate.wait()
        await self.inner.start()

    async def stop(self, grace_s: float) -> None:
        await self.inner.stop(grace_s)


async def test_health_is_not_serving_until_models_are_loaded() -> None:
    from speech_platform.service import ServiceContext
    from speech_server.server import SpeechServer
    from stt_service.service import build

    settings = test_settings([])
    gate = asyncio.Event()
    service = _GatedService(build(ServiceContext(settings=settings)), gate)
    server = SpeechServer(settings, [service])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", STT):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            gate.set()
            await server.wait_ready(300)
            for name in ("", STT):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(1)


def test_sigterm_drains_in_flight_work_then_exits(librivox_clips: list[Clip]) -> None:
    """After SIGTERM: in-flight requests finish, new ones are refused, the process exits 0."""

    async def scenario(address: str, proc: subprocess.Popen[str], metrics_port: int) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = stt_pb2_grpc.SpeechToTextStub(channel)
            calls = [
                asyncio.ensure_future(stub.Transcribe(wav_request(c, skip_cache=True)))
                for c in librivox_clips * 2
            ]
            # Every call in flight (its handler started) before SIGTERM: one still in
            # transit when the server stops is cancelled, not drained.
            await _until_in_flight(metrics_port, len(calls))
            proc.send_signal(15)
            # readiness flips first; a new request is then refused, never half-served
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(200):
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=STT))
                    if reply.status != health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    break
                await asyncio.sleep(0.01)  # bounded poll of another process's state
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Transcribe(wav_request(librivox_clips[0], skip_cache=True))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            results = await asyncio.gather(*calls, return_exceptions=True)
            failures = [r for r in results if not isinstance(r, stt_pb2.TranscribeResponse)]
            assert not failures, failures
            for result in results:
                assert isinstance(result, stt_pb2.TranscribeResponse)
                assert result.text.strip()

    with server_process(["--services", "stt"]) as server:
        asyncio.run(scenario(server.address, server.process, server.metrics_port))
        assert server.process.wait(timeout=120) == 0


async def _until_in_flight(metrics_port: int, count: int) -> None:
    """Waits (bounded) until the server reports ``count`` RPCs in flight."""
    for _ in range(600):
        text = await asyncio.to_thread(fetch_metrics, metrics_port)
        if metric_samples(text, "speech_requests_in_flight", service="SpeechToText") >= count:
            return
        await asyncio.sleep(0.02)  # bounded poll of another process's state
    raise AssertionError("requests never reached the server")


def test_config_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speech_platform.config import load_settings

    config = tmp_path / "speech.yaml"
    config.write_text(
        "server:\n  port: 6000\nstt:\n  instances: 3\n  batcher:\n    max_batch_size: 4\n"
    )
    monkeypatch.setenv("SPEECH_STT__INSTANCES", "5")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/0")
    monkeypatch.delenv("SPEECH_CONFIG_FILE", raising=False)
    settings = load_settings(str(config))
    assert "SPEECH_CONFIG_FILE" not in os.environ  # the file applies to these settings only
    assert settings.server.port == 6000  # from the file
    assert settings.stt.instances == 5  # the environment wins over the file
    assert settings.stt.batcher.max_batch_size == 4
    assert settings.cache.redis_url == "redis://example:6379/0"
    # overriding one batcher field keeps the engine's own defaults for the others
    monkeypatch.setenv("SPEECH_STT__BATCHER__MAX_QUEUE_DELAY_MS", "3")
    tuned = load_settings().stt.batcher
    assert tuned.max_queue_delay_ms == 3 and tuned.max_queue_size == 512
    monkeypatch.setenv("SPEECH_STT__INSTANCES", "0")
    with pytest.raises(ValueError, match="instances"):
        load_settings()
