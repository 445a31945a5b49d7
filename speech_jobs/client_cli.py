"""``speech-jobs``: submit, watch, get, cancel and list jobs on a speech server.

    speech-jobs submit-transcription interview.wav             # uploads, then a progress bar
    speech-jobs submit-transcription --uri file:///shared/interview.wav --no-watch
    speech-jobs submit-synthesis questions.txt --voice en_US-joe-medium
    speech-jobs watch JOB_ID; speech-jobs get JOB_ID --json; speech-jobs cancel JOB_ID
    speech-jobs list --state running

The server address comes from --server, else SPEECH_SERVER, else localhost:50051; a bearer
token from --token or SPEECH_TOKEN. Exit status: 0 when the job succeeded (or for a plain
command), 1 when it failed or was cancelled, 2 for a refused request, 130 on Ctrl+C (the
job itself goes on).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from tqdm import tqdm

from speech.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, stt_pb2, tts_pb2

#: Consecutive broken watches (server unreachable) before giving up.
MAX_REWATCHES = 10
_STATES = {
    name.removeprefix("JOB_STATE_").lower(): value
    for name, value in jobs_pb2.JobState.items()
    if value
}
_TIERS = {"standard": tts_pb2.VOICE_TIER_STANDARD, "high": tts_pb2.VOICE_TIER_HIGH}
_ENCODINGS = {
    name.removeprefix("AUDIO_ENCODING_").lower(): value
    for name, value in common_pb2.AudioEncoding.items()
    if value
}
_EXTENSIONS = {
    common_pb2.AUDIO_ENCODING_UNSPECIFIED: "wav",
    common_pb2.AUDIO_ENCODING_WAV: "wav",
    common_pb2.AUDIO_ENCODING_LINEAR16: "pcm",
    common_pb2.AUDIO_ENCODING_MULAW: "ulaw",
    common_pb2.AUDIO_ENCODING_FLAC: "flac",
    common_pb2.AUDIO_ENCODING_MP3: "mp3",
    common_pb2.AUDIO_ENCODING_OGG_OPUS: "ogg",
}


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-jobs",
        description="Submit, watch, get, cancel and list jobs on a speech server.",
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("SPEECH_SERVER", "localhost:50051"),
        help="host:port (default: $SPEECH_SERVER or localhost:50051)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SPEECH_TOKEN", ""),
        help="bearer token, if the server wants one (default: $SPEECH_TOKEN)",
    )
    parser.add_argument(
        "--cacert",
        default=os.environ.get("SPEECH_CACERT", ""),
        help="PEM CA bundle that signs the server's certificate: connect with TLS "
        "(default: $SPEECH_CACERT; without it, plaintext)",
    )
    parser.add_argument(
        "--cert", default=os.environ.get("SPEECH_CERT", ""),
        help="client certificate (PEM) for mTLS (default: $SPEECH_CERT)",
    )
    parser.add_argument(
        "--key", default=os.environ.get("SPEECH_KEY", ""),
        help="the client certificate's private key (PEM) (default: $SPEECH_KEY)",
    )
    parser.add_argument("--json", action="store_true", help="print jobs as JSON")
    commands = parser.add_subparsers(dest="command", required=True)

    stt = commands.add_parser("submit-transcription", help="transcribe a long recording")
    source = stt.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="audio file to upload")
    source.add_argument("--uri", help="file:// URI the workers can read instead of uploading")
    stt.add_argument("--model", default="")
    stt.add_argument("--language", default="")
    stt.add_argument("--beam-size", type=int, default=0)
    stt.add_argument("--word-times", action="store_true", help="include word timestamps")
    stt.add_argument("--job-id", default="", help="your own id (a repeated submit is a no-op)")
    stt.add_argument("--no-watch", action="store_true", help="print the job id and return")

    tts = commands.add_parser("submit-synthesis", help="synthesize many texts into the cache")
    tts.add_argument("texts", type=Path, help="text file, one text per line ('-' for stdin)")
    tts.add_argument("--voice", default="")
    tts.add_argument("--tier", choices=sorted(_TIERS), default=None)
    tts.add_argument("--encoding", choices=sorted(_ENCODINGS), default=None)
    tts.add_argument(
        "--out-dir", type=Path, help="also fetch the audio and write one file per text"
    )
    tts.add_argument("--job-id", default="")
    tts.add_argument("--no-watch", action="store_true")

    for name, text in (
        ("get", "show a job and its result"),
        ("watch", "follow a job with a progress bar until it ends"),
        ("cancel", "cancel a queued or running job"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("job_id")
    listing = commands.add_parser("list", help="recent jobs, newest first")
    listing.add_argument("--state", choices=sorted(_STATES), default=None)
    listing.add_argument("--limit", type=int, default=0)
    return parser


def open_channel(address: str, cacert: str = "", cert: str = "", key: str = "") -> grpc.Channel:
    """Plaintext, or TLS when a CA is given (with a client certificate: mTLS)."""
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    if not cacert:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(cacert).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    return grpc.secure_channel(address, credentials, options=options)


class JobsClient:
    def __init__(self, address: str, token: str, channel: grpc.Channel | None = None) -> None:
        self._channel = channel or open_channel(address)
        self.stub = jobs_pb2_grpc.JobsStub(self._channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        self._channel.close()

    def watch(self, job_id: str) -> Iterator[jobs_pb2.Job]:
        """The job's updates until it ends, watching again when the stream breaks off
        UNAVAILABLE (servers recycle connections; a new watch starts from the current state)."""
        failures = 0
        while True:
            request = jobs_pb2.WatchJobRequest(job_id=job_id)
            try:
                for response in self.stub.WatchJob(request, metadata=self.metadata):
                    failures = 0
                    yield response.job
                return
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code != grpc.StatusCode.UNAVAILABLE or failures >= MAX_REWATCHES:
                    raise
                failures += 1
                time.sleep(min(0.2 * 2**failures, 5.0))  # back-off before watching again


def read_texts(path: Path, stdin: TextIO) -> list[str]:
    lines = stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    return [line.strip() for line in lines.splitlines() if line.strip()]


def follow(jobs: Iterable[jobs_pb2.Job], out: TextIO) -> jobs_pb2.Job:
    """Draws a progress bar until the job ends; returns the final job."""
    last: jobs_pb2.Job | None = None
    with tqdm(total=100, unit="%", file=out, dynamic_ncols=True, leave=True) as bar:
        for job in jobs:
            shown = round(job.progress * 100, 1)
            bar.update(max(shown - bar.n, 0))
            bar.set_description(state_name(job.state).lower())
            last = job
    if last is None:
        raise RuntimeError("the server ended the watch without a job")
    return last


def describe(job: jobs_pb2.Job) -> str:
    line = f"{job.job_id}  {state_name(job.state):<9}  {job.progress * 100:5.1f}%"
    line += f"  {jobs_pb2.JobKind.Name(job.kind).removeprefix('JOB_KIND_').lower()}"
    if job.error:
        line += f"  error: {job.error}"
    return line


def report(job: jobs_pb2.Job, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        out.write(json_format.MessageToJson(job) + "\n")
    else:
        out.write(describe(job) + "\n")
        if job.HasField("transcription"):
            out.write(job.transcription.text.strip() + "\n")
        if job.HasField("synthesis"):
            ok = sum(1 for item in job.synthesis.items if not item.error)
            out.write(f"{ok} of {len(job.synthesis.items)} texts synthesized into the cache\n")
    out_dir: Path | None = getattr(args, "out_dir", None)
    if out_dir is not None and job.HasField("synthesis"):
        out_dir.mkdir(parents=True, exist_ok=True)
        extension = _EXTENSIONS.get(job.synthesis.encoding, "bin")
        for item in job.synthesis.items:
            if item.audio:
                (out_dir / f"{item.index:05d}.{extension}").write_bytes(item.audio)
    if job.state == jobs_pb2.JOB_STATE_SUCCEEDED:
        return 0
    return 1 if job.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED) else 0


def run(args: argparse.Namespace, client: JobsClient, out: TextIO, err: TextIO) -> int:
    stub, metadata = client.stub, client.metadata
    job: jobs_pb2.Job
    if args.command == "submit-transcription":
        config = stt_pb2.RecognitionConfig(
            model=args.model,
            language_code=args.language,
            beam_size=args.beam_size,
            enable_word_time_offsets=args.word_times,
        )
        request = jobs_pb2.SubmitTranscriptionJobRequest(config=config, job_id=args.job_id)
        if args.uri:
            request.uri = args.uri
        else:
            request.audio = args.file.read_bytes()
        job = stub.SubmitTranscriptionJob(request, metadata=metadata).job
    elif args.command == "submit-synthesis":
        synthesis = jobs_pb2.SubmitSynthesisJobRequest(
            texts=read_texts(args.texts, sys.stdin),
            voice=args.voice,
            job_id=args.job_id,
            include_audio=args.out_dir is not None,
        )
        if args.tier:
            synthesis.tier = _TIERS[args.tier]
        if args.encoding:
            synthesis.audio_config.encoding = _ENCODINGS[args.encoding]  # type: ignore[assignment]
        job = stub.SubmitSynthesisJob(synthesis, metadata=metadata).job
    elif args.command == "get":
        job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=args.job_id), metadata=metadata).job
        return report(job, args, out)
    elif args.command == "cancel":
        job = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=args.job_id), metadata=metadata).job
        return report(job, args, out)
    elif args.command == "list":
        listing = jobs_pb2.ListJobsRequest(page_size=args.limit)
        if args.state:
            listing.state = _STATES[args.state]  # type: ignore[assignment]
        for listed in stub.ListJobs(listing, metadata=metadata).jobs:
            out.write((json_format.MessageToJson(listed) if args.json else describe(listed)) + "\n")
        return 0
    else:  # watch
        return report(follow(client.watch(args.job_id), err), args, out)
    err.write(f"job {job.job_id} {state_name(job.state).lower()}\n")
    if getattr(args, "no_watch", False):
        out.write(job.job_id + "\n")
        return 0
    return report(follow(client.watch(job.job_id), err), args, out)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        channel = open_channel(args.server, args.cacert, args.cert, args.key)
    except OSError as error:
        sys.stderr.write(f"speech-jobs: {error}\n")
        raise SystemExit(2) from None
    client = JobsClient(args.server, args.token, channel)
    try:
        code = run(args, client, sys.stdout, sys.stderr)
    except grpc.RpcError as error:
        status: Any = error
        sys.stderr.write(f"speech-jobs: {status.code().name}: {status.details()}\n")
        code = 2
    except OSError as error:
        sys.stderr.write(f"speech-jobs: {error}\n")
        code = 2
    except KeyboardInterrupt:
        sys.stderr.write("\nspeech-jobs: stopped watching; the job goes on on the server\n")
        code = 130
    finally:
        client.close()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
