"""Python client SDK of the speech platform, and the ``speechctl`` command built on it.

It depends only on the generated stubs (``speech.v1``), grpcio, the google.rpc status types
the server attaches to errors, and tqdm for the command's progress bars: nothing of the
server, so it can ship alone. ``SpeechClient`` adds to the stubs what every caller would
write again: one channel with TLS and a bearer token, an overall deadline, retries that
wait as long as the server's RetryInfo asks, and paced streaming from a file.
"""

from speech_client.channel import ConnectOptions
from speech_client.client import SpeechClient
from speech_client.retry import RetryPolicy, retry_delay

__all__ = ["ConnectOptions", "RetryPolicy", "SpeechClient", "retry_delay"]
