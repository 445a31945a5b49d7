"""A tiny service for tests: it answers what the server's interceptor made of the call
(the caller key fair queuing uses, and the level a HIGH request is served at)."""

from __future__ import annotations

import json
from typing import Any

import grpc

from speech.v1 import common_pb2
from speech_platform.callers import caller_of
from speech_platform.principals import current_principal
from speech_platform.priority import from_proto

METHOD = "/speech.test.Probe/WhoAmI"


class ProbeService:
    name = "probe"
    grpc_service_names: tuple[str, ...] = ("speech.test.Probe",)

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(self._who_am_i)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("speech.test.Probe", {"WhoAmI": handler}),)
        )

    async def _who_am_i(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        principal = current_principal()
        return json.dumps(
            {
                "caller": caller_of(context),
                "admin": bool(principal and principal.is_admin),
                "high_served_at": from_proto(common_pb2.PRIORITY_HIGH),
            }
        ).encode()

    async def start(self) -> None:
        pass

    async def stop(self, grace_s: float) -> None:
        pass


async def who_am_i(channel: grpc.aio.Channel, token: str = "") -> dict[str, Any]:
    call = channel.unary_unary(METHOD)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    reply = await call(b"", metadata=metadata)
    return dict(json.loads(reply))
