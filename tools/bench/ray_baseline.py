"""``python -m tools.bench.ray_baseline --grpc-port P``: the peer baseline.

Ray Serve serving the same contract (speech.v1.SpeechToText.Transcribe through Ray Serve's
gRPC proxy) with the same model, batched as Ray's docs suggest: a deployment class whose
batch method carries ``@serve.batch`` and loops the model over the batch (faster-whisper has
no cross-request batch call). Replicas, threads and batch settings come as one JSON line per
configuration on stdin; each deployment is announced with a line "DEPLOYED" on stdout, and
start-up with "READY". Loopback only; no dashboard.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any

APP_NAME = "whisper"
SERVICER_FUNCTION = "speech.v1.stt_pb2_grpc.add_SpeechToTextServicer_to_server"


def _deployment(config: dict[str, Any]) -> Any:
    from ray import serve

    from speech.v1 import stt_pb2
    from tools.bench import engines

    threads = int(config["threads"])

    @serve.deployment(
        num_replicas=int(config["replicas"]),
        ray_actor_options={"num_cpus": threads},
        max_ongoing_requests=int(config.get("max_ongoing_requests", 32)),
    )
    class WhisperDeployment:
        def __init__(self) -> None:
            self.model = engines.load_whisper(threads)

        @serve.batch(
            max_batch_size=int(config["max_batch_size"]),
            batch_wait_timeout_s=float(config["wait_ms"]) / 1000.0,
        )
        async def transcribe_batch(
            self, requests: list[stt_pb2.TranscribeRequest]
        ) -> list[stt_pb2.TranscribeResponse]:
            responses = []
            for request in requests:
                text, seconds = engines.transcribe_tuned(self.model, request.audio)
                responses.append(
                    stt_pb2.TranscribeResponse(
                        text=text, audio_duration_seconds=seconds, model="tiny.en",
                        language_code="en",
                    )
                )
            return responses

        async def Transcribe(  # the gRPC method name, as Ray's proxy routes it
            self, request: stt_pb2.TranscribeRequest
        ) -> stt_pb2.TranscribeResponse:
            response: stt_pb2.TranscribeResponse = await self.transcribe_batch(request)
            return response

    return WhisperDeployment.bind()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ray_baseline", description=__doc__)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    logging.getLogger("ray").setLevel(logging.WARNING)
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=True,
    )
    serve.start(
        http_options={"host": "127.0.0.1", "port": args.http_port},
        grpc_options=gRPCOptions(port=args.grpc_port, grpc_servicer_functions=[SERVICER_FUNCTION]),
        logging_config={"log_level": "WARNING"},
    )
    # SIGTERM (the bench stopping it) unwinds through the finally below, so Ray's own
    # processes are shut down rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("READY", flush=True)
    try:
        for line in sys.stdin:  # one configuration per line, until the bench closes stdin
            if not line.strip():
                continue
            config = json.loads(line)
            serve.run(_deployment(config), name=APP_NAME)
            print("DEPLOYED", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
