"""``speechctl``: transcribe files, synthesize speech and stream a file as a live microphone.

    speechctl transcribe interview.wav                  # prints the transcript
    speechctl transcribe --format json a.wav b.flac     # one result per file
    speechctl say "Tell me about your last project." -o question.wav
    speechctl stream --mic-file call.wav                # real time, interim and final lines

Where: --target (else SPEECH_SERVER, else localhost:50051); --token (else SPEECH_TOKEN);
--ca, --cert and --key turn on TLS and mutual TLS. --timeout bounds a command's call,
retries included. A call the server refuses for load (RESOURCE_EXHAUSTED, UNAVAILABLE) is
retried --retries times, each after the delay the server's RetryInfo asks for. Exit
status: 0 done, 1 the call failed (the status and message go to stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import grpc
from tqdm import tqdm

from speech.v1 import common_pb2, stt_pb2, tts_pb2
from speech_client.audio import WavWriter, paced_chunks, read_pcm
from speech_client.channel import ConnectOptions
from speech_client.client import SpeechClient
from speech_client.formats import FORMATTERS
from speech_client.retry import Retry, RetryPolicy

DEFAULT_TIMEOUT_S = 300.0
_TIERS = {"standard": tts_pb2.VOICE_TIER_STANDARD, "high": tts_pb2.VOICE_TIER_HIGH}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default=os.environ.get("SPEECH_SERVER", "localhost:50051"),
                        help="server host:port (default $SPEECH_SERVER or localhost:50051)")
    parser.add_argument("--token", default=os.environ.get("SPEECH_TOKEN", ""),
                        help="bearer token (default $SPEECH_TOKEN)")
    parser.add_argument("--ca", type=Path, help="PEM roots of the server certificate (TLS)")
    parser.add_argument("--cert", type=Path, help="client certificate, PEM (mutual TLS)")
    parser.add_argument("--key", type=Path, help="client private key, PEM (mutual TLS)")
    parser.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help=f"deadline of the call, retries included (default "
                             f"{DEFAULT_TIMEOUT_S:.0f}; none for stream)")
    parser.add_argument("--retries", type=int, default=3, metavar="N",
                        help="retries of a call refused for load (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="never draw progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    transcribe = commands.add_parser("transcribe", help="print the transcript of audio files")
    transcribe.add_argument("files", nargs="+", type=Path, metavar="FILE")
    transcribe.add_argument("--format", choices=sorted(FORMATTERS), default="text")
    transcribe.add_argument("--language", default="", help="language code (default: detect)")
    transcribe.add_argument("--model", default="", help="model name (default: the server's)")
    transcribe.add_argument("--word-times", action="store_true", help="word timings (json)")

    say = commands.add_parser("say", help="synthesize TEXT ('-' reads stdin) into a WAV file")
    say.add_argument("text", metavar="TEXT")
    say.add_argument("-o", "--output", type=Path, required=True, help="WAV file to write")
    say.add_argument("--voice", default="", help="voice name (default: the server's)")
    say.add_argument("--tier", choices=sorted(_TIERS), help="voice tier instead of a voice")
    say.add_argument("--sample-rate", type=int, default=0, help="Hz (default: the voice's)")
    say.add_argument("--speaking-rate", type=float, default=0.0, help="1.0 is normal speed")

    stream = commands.add_parser(
        "stream", help="stream an audio file as a live microphone, printing results")
    stream.add_argument("--mic-file", type=Path, required=True, metavar="FILE",
                        help="16-bit WAV, or raw s16le with --sample-rate")
    stream.add_argument("--sample-rate", type=int, help="Hz of a raw (headerless) file")
    stream.add_argument("--speed", type=float, default=1.0,
                        help="times real time (default 1; 0 sends as fast as allowed)")
    stream.add_argument("--chunk-ms", type=int, default=100, help="audio per message")
    stream.add_argument("--no-interim", action="store_true", help="final results only")
    stream.add_argument("--json", action="store_true", help="one JSON object per result")
    stream.add_argument("--language", default="")
    stream.add_argument("--model", default="")
    return parser


def connect(args: argparse.Namespace, err: TextIO) -> SpeechClient:
    options = ConnectOptions(target=args.target, token=args.token, ca=args.ca, cert=args.cert,
                             key=args.key, tls=args.tls)
    timeout = args.timeout
    if timeout is None and args.command != "stream":
        timeout = DEFAULT_TIMEOUT_S

    def announce(retry: Retry) -> None:
        source = "as the server asked" if retry.from_server else "(backoff)"
        print(f"speechctl: {retry.code.name}: {retry.message}; retrying in "
              f"{retry.delay_s:.2f} s {source} (attempt {retry.attempt + 1} of "
              f"{args.retries + 1})", file=err, flush=True)

    return SpeechClient(options, retry=RetryPolicy(max_attempts=args.retries + 1),
                        timeout_s=timeout, on_retry=announce)


def progress(args: argparse.Namespace, err: TextIO, hide: bool = False, **kwargs: object) -> tqdm:
    """A bar on stderr, drawn only on a terminal (never with --no-progress or ``hide``)."""
    disable = True if args.no_progress or hide else None  # None: tqdm checks for a terminal
    return tqdm(file=err, disable=disable, leave=False, **kwargs)


def run_transcribe(args: argparse.Namespace, client: SpeechClient, out: TextIO,
                   err: TextIO) -> int:
    config = stt_pb2.RecognitionConfig(language_code=args.language, model=args.model,
                                       enable_word_time_offsets=args.word_times)
    formatter = FORMATTERS[args.format]
    with progress(args, err, hide=len(args.files) == 1, total=len(args.files), unit="file") as bar:
        for path in args.files:
            response = client.transcribe(path.read_bytes(), config)
            if len(args.files) > 1:
                print(f"==> {path} <==", file=out)
            print(formatter(response), file=out, flush=True)
            bar.update(1)
    return 0


def run_say(args: argparse.Namespace, client: SpeechClient, out: TextIO, err: TextIO) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    tier = _TIERS[args.tier] if args.tier else tts_pb2.VOICE_TIER_UNSPECIFIED
    request = tts_pb2.StreamingSynthesizeRequest(
        text=text, voice=args.voice, tier=tier,
        audio_config=tts_pb2.AudioConfig(encoding=common_pb2.AUDIO_ENCODING_LINEAR16,
                                         sample_rate_hertz=args.sample_rate,
                                         speaking_rate=args.speaking_rate))
    seconds, rate, who = 0.0, 0, ""
    with WavWriter(args.output) as wav, progress(args, err, total=len(text), unit="char") as bar:
        for part in client.stream_synthesize(request):
            wav.write(part.audio, part.sample_rate_hertz)
            seconds += part.audio_duration_seconds
            rate, who = part.sample_rate_hertz, f"{part.engine}/{part.voice}"
            bar.update(min(len(part.text) + 1, bar.total - bar.n))
    if not rate:
        print("speechctl: the server sent no audio", file=err)
        return 1
    print(f"wrote {args.output}: {seconds:.2f} s at {rate} Hz ({who})", file=err)
    return 0


def run_stream(args: argparse.Namespace, client: SpeechClient, out: TextIO, err: TextIO) -> int:
    pcm = read_pcm(args.mic_file, args.sample_rate)
    config = stt_pb2.StreamingRecognitionConfig(
        config=stt_pb2.RecognitionConfig(
            encoding=common_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=pcm.sample_rate,
            audio_channel_count=pcm.channels, language_code=args.language, model=args.model),
        interim_results=not args.no_interim)
    with progress(args, err, total=round(pcm.seconds, 1), unit="s") as bar:
        def microphone() -> Iterator[bytes]:
            bar.reset()  # a retry replays the file from its start
            return paced_chunks(pcm, args.chunk_ms, args.speed,
                                on_chunk=lambda seconds: bar.update(round(seconds, 3)))

        for result in client.stream_transcribe(config, microphone):
            print(describe_result(result, args.json), file=out, flush=True)
    return 0


def describe_result(result: stt_pb2.StreamingTranscribeResponse, as_json: bool) -> str:
    if as_json:
        return json.dumps({
            "is_final": result.is_final, "text": result.text,
            "utterance_index": result.utterance_index,
            "start_seconds": round(result.start_seconds, 3),
            "end_seconds": round(result.end_seconds, 3),
        })
    return f"[{'final' if result.is_final else 'interim'}] {result.text.strip()}"


COMMANDS: dict[str, Callable[[argparse.Namespace, SpeechClient, TextIO, TextIO], int]] = {
    "transcribe": run_transcribe,
    "say": run_say,
    "stream": run_stream,
}


def run(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with connect(args, err) as client:
            return COMMANDS[args.command](args, client, out, err)
    except grpc.RpcError as error:
        print(f"speechctl: {error.code().name}: {error.details()}", file=err)
        return 1
    except (OSError, ValueError) as error:
        print(f"speechctl: {error}", file=err)
        return 2


def main() -> None:
    sys.exit(run())
