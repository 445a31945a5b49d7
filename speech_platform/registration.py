"""Registers a servicer as its generated ``add_*Servicer_to_server`` does, with the request
parsers of some unary methods replaced (speech_platform.wire's ``parse_apart``).

The generated function stays the one source of the method table: it registers onto a
stand-in that records the table, and the table, with those parsers swapped, goes to the
real server the same two ways the generated code uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc


class _Recorder:
    """Stands in for the server while the generated function registers its table."""

    def __init__(self) -> None:
        self.tables: list[tuple[str, dict[str, grpc.RpcMethodHandler]]] = []

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same table arrives below, by name

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.tables.append((service, dict(handlers)))


def register_with_parsers(
    add_to_server: Callable[[Any, Any], None],
    servicer: object,
    server: grpc.aio.Server,
    parsers: Mapping[str, Callable[[bytes], Any]],
) -> None:
    """``add_to_server(servicer, server)``, with ``parsers`` (method name -> request
    deserializer) in place of the generated ones; a name that is not a unary method of the
    service is a programming error (KeyError / ValueError at start-up)."""
    recorder = _Recorder()
    add_to_server(servicer, recorder)
    if len(recorder.tables) != 1:
        raise ValueError(f"expected one service table, got {len(recorder.tables)}")
    service, handlers = recorder.tables[0]
    for name, parse in parsers.items():
        handler = handlers[name]
        if handler.unary_unary is None:
            raise ValueError(f"{service}/{name} is not unary-unary")
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            handler.unary_unary,
            request_deserializer=parse,
            response_serializer=handler.response_serializer,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
