"""Real-time recognition for ``SpeechToText.StreamingTranscribe``.

pcm (chunks to samples) -> vad (incremental Silero) -> endpointing (utterances) ->
session (interim and final decodes through the shared batcher, results in order) ->
rpc (protocol, limits, metrics). See each module for the why.
"""

from stt_service.streaming.rpc import OutOfRange, StreamingRecognizer

__all__ = ["OutOfRange", "StreamingRecognizer"]
