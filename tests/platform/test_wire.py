"""speech_platform.wire: a large bytes field kept apart as a view of the received bytes must
give exactly the message a full parse gives, and anything that does not scan falls back to
the full parse (and its error)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from speech.v1 import stt_pb2, stt_pb2_grpc
from speech_platform.registration import register_with_parsers
from speech_platform.wire import MAX_FIELDS_SCANNED, Received, parse_apart, split_bytes_field

AUDIO = stt_pb2.TranscribeRequest.DESCRIPTOR.fields_by_name["audio"].number
parse = parse_apart(stt_pb2.TranscribeRequest.FromString, AUDIO, min_bytes=0)


def _as_whole(received: stt_pb2.TranscribeRequest | Received[stt_pb2.TranscribeRequest]):
    """The message a full parse would give, rebuilt from one kept apart."""
    assert isinstance(received, Received)
    message = stt_pb2.TranscribeRequest()
    message.CopyFrom(received.message)
    assert message.audio == b""  # the field really was left out of the parse
    message.audio = bytes(received.payload)
    return message


@given(
    audio=st.binary(max_size=3000),
    prompt=st.text(max_size=50),
    hotwords=st.lists(st.text(max_size=10), max_size=4),
    beam=st.integers(min_value=0, max_value=10),
    audio_first=st.booleans(),
)
def test_kept_apart_is_the_message_a_full_parse_gives(audio, prompt, hotwords, beam, audio_first):
    config = stt_pb2.RecognitionConfig(initial_prompt=prompt, hotwords=hotwords, beam_size=beam)
    parts = [
        stt_pb2.TranscribeRequest(audio=audio).SerializeToString(),
        stt_pb2.TranscribeRequest(config=config).SerializeToString(),
    ]
    data = b"".join(parts if audio_first else parts[::-1])
    assert _as_whole(parse(data)) == stt_pb2.TranscribeRequest.FromString(data)


def test_the_payload_is_a_view_of_the_received_bytes_not_a_copy():
    data = stt_pb2.TranscribeRequest(audio=b"x" * 100_000).SerializeToString()
    received = parse(data)
    assert isinstance(received, Received)
    assert received.payload.obj is data
    assert len(received.payload) == 100_000


def test_a_repeated_field_keeps_its_last_value_as_a_parser_does():
    data = (
        stt_pb2.TranscribeRequest(audio=b"first").SerializeToString()
        + stt_pb2.TranscribeRequest(audio=b"second").SerializeToString()
    )
    whole = stt_pb2.TranscribeRequest.FromString(data)
    assert bytes(parse(data).payload) == b"second" == whole.audio


def test_unknown_fields_stay_with_the_message():
    unknown = bytes([(15 << 3) | 0, 7])  # field 15 (unknown), varint 7
    data = unknown + stt_pb2.TranscribeRequest(audio=b"abc").SerializeToString()
    assert _as_whole(parse(data)) == stt_pb2.TranscribeRequest.FromString(data)


def test_absent_field_is_an_empty_view():
    config = stt_pb2.RecognitionConfig(beam_size=3)
    data = stt_pb2.TranscribeRequest(config=config).SerializeToString()
    received = parse(data)
    assert bytes(received.payload) == b"" and received.message.config.beam_size == 3


def test_small_messages_are_parsed_whole():
    small = parse_apart(stt_pb2.TranscribeRequest.FromString, AUDIO, min_bytes=1024)
    message = small(stt_pb2.TranscribeRequest(audio=b"abc").SerializeToString())
    assert isinstance(message, stt_pb2.TranscribeRequest) and message.audio == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        bytes([(AUDIO << 3) | 2, 100]) + b"short",  # length past the end
        bytes([(AUDIO << 3) | 2, 0xFF]),  # truncated varint
        bytes([0x00, 0x01]),  # field number 0
    ],
)
def test_what_does_not_scan_gets_the_parsers_own_error(data):
    with pytest.raises(ValueError):
        split_bytes_field(data, AUDIO)
    with pytest.raises(DecodeError):
        parse(data)


def test_the_field_with_another_wire_type_is_left_for_the_parser():
    data = bytes([(AUDIO << 3) | 0, 5])  # audio as a varint: upb keeps it as unknown
    rest, payload = split_bytes_field(data, AUDIO)
    assert rest == data and bytes(payload) == b""
    assert _as_whole(parse(data)) == stt_pb2.TranscribeRequest.FromString(data)


def test_many_small_fields_are_parsed_whole_not_walked():
    unknown = bytes([(15 << 3) | 0, 1]) * (MAX_FIELDS_SCANNED + 1)
    data = unknown + stt_pb2.TranscribeRequest(audio=b"abc").SerializeToString()
    with pytest.raises(ValueError, match="fields"):
        split_bytes_field(data, AUDIO)
    message = parse(data)
    assert isinstance(message, stt_pb2.TranscribeRequest) and message.audio == b"abc"


class _Server:
    """Records what a real server would be given."""

    def __init__(self) -> None:
        self.generic: list[object] = []
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        self.generic.append(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.registered[service] = handlers


def test_registration_swaps_only_the_named_parser():
    server = _Server()
    servicer = stt_pb2_grpc.SpeechToTextServicer()
    register_with_parsers(
        stt_pb2_grpc.add_SpeechToTextServicer_to_server, servicer, server, {"Transcribe": parse}
    )
    handlers = server.registered["speech.v1.SpeechToText"]
    assert len(server.generic) == 1
    assert handlers["Transcribe"].request_deserializer is parse
    assert handlers["Transcribe"].unary_unary == servicer.Transcribe
    listed = handlers["ListModels"].request_deserializer
    assert listed == stt_pb2.ListModelsRequest.FromString
    with pytest.raises(KeyError):
        register_with_parsers(
            stt_pb2_grpc.add_SpeechToTextServicer_to_server, servicer, _Server(), {"Nope": parse}
        )
    with pytest.raises(ValueError, match="not unary-unary"):
        register_with_parsers(
            stt_pb2_grpc.add_SpeechToTextServicer_to_server,
            servicer,
            _Server(),
            {"StreamingTranscribe": parse},
        )
