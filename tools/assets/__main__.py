"""``python -m tools.assets [--model-dir DIR] [--only stt|tts]``: builds every model asset."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speech_platform.config import get_settings
from tools.assets import stt, tts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.assets", description="Builds the model files the server reads."
    )
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--only", choices=["stt", "tts"], default=None)
    parser.add_argument(
        "--voices-tarball", type=Path, default=None,
        help=f"a local kokoro-js-{tts.KOKORO_JS_VERSION}.tgz instead of `npm pack`",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_dir = args.model_dir or get_settings().model_dir
    if args.only in (None, "stt"):
        for name, path in stt.ensure_whisper(model_dir).items():
            print(f"whisper {name}: {path}")
    if args.only in (None, "tts"):
        tts.main(["--model-dir", str(model_dir)]
                 + (["--voices-tarball", str(args.voices_tarball)] if args.voices_tarball else []))


if __name__ == "__main__":
    main()
