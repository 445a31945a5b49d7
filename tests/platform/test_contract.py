"""The speech.v1 contract: lint-clean, and the generated stubs are exactly what protos/ gives."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from gen_protos import generate  # noqa: E402

from tools.fetch.buf import install as install_buf  # noqa: E402


def test_protos_pass_buf_lint() -> None:
    buf = install_buf()
    result = subprocess.run(
        [str(buf), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_build_accepts_every_proto() -> None:
    result = subprocess.run(
        [str(install_buf()), "build", "-o", "/dev/null"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = tmp_path / "speech" / "v1"
    installed = ROOT / "speech" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.suffix in {".py", ".pyi"})
    assert names, "protoc generated nothing"
    _, mismatch, missing = filecmp.cmpfiles(fresh, installed, names, shallow=False)
    assert not mismatch and not missing, (
        f"stubs drifted from protos/ (mismatch {mismatch}, missing {missing}): "
        "run `make setup` to regenerate; never edit speech/v1 by hand"
    )


def test_contract_names_that_clients_rely_on() -> None:
    from speech.v1 import common_pb2, jobs_pb2, stt_pb2, tts_pb2

    stt = stt_pb2.DESCRIPTOR.services_by_name["SpeechToText"]
    assert {m.name for m in stt.methods} == {"Transcribe", "StreamingTranscribe", "ListModels"}
    tts = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"]
    assert {m.name for m in tts.methods} == {
        "Synthesize", "StreamingSynthesize", "StreamingSynthesizeText", "ListVoices"
    }
    jobs = jobs_pb2.DESCRIPTOR.services_by_name["Jobs"]
    assert {m.name for m in jobs.methods} >= {"SubmitTranscriptionJob", "GetJob", "WatchJob"}
    assert set(common_pb2.AudioEncoding.keys()) == {
        "AUDIO_ENCODING_UNSPECIFIED", "AUDIO_ENCODING_LINEAR16", "AUDIO_ENCODING_MULAW",
        "AUDIO_ENCODING_WAV", "AUDIO_ENCODING_FLAC", "AUDIO_ENCODING_MP3",
        "AUDIO_ENCODING_OGG_OPUS",
    }
    config_fields = set(stt_pb2.RecognitionConfig.DESCRIPTOR.fields_by_name)
    assert {"encoding", "sample_rate_hertz", "language_code", "model",
            "enable_word_time_offsets"} <= config_fields
    response_fields = set(tts_pb2.SynthesizeResponse.DESCRIPTOR.fields_by_name)
    assert {"audio", "engine", "voice", "cache_hit"} <= response_fields


#: The contract as it last landed before this round's additions: clients built against it
#: keep working (every change since is additive). Move it forward only with a release.
RELEASED_CONTRACT = "d05e8b65a268b4d7913e61a2f85bf005b612631f"


def _breaking(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(install_buf()), "breaking", "protos", "--against",
         f"{ROOT / '.git'}#ref={RELEASED_CONTRACT},subdir=protos"],
        cwd=tree, capture_output=True, text=True, timeout=300, check=False,
    )


def test_protos_break_nothing_against_the_released_contract() -> None:
    result = _breaking(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_breaking_check_catches_a_renumbered_field(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "protos").mkdir(parents=True)
    (tree / "buf.yaml").write_bytes((ROOT / "buf.yaml").read_bytes())
    for proto in (ROOT / "protos").rglob("*.proto"):
        target = tree / proto.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = proto.read_text()
        if proto.name == "stt.proto":
            text = text.replace("string language_code = 4;", "string language_code = 40;", 1)
        target.write_text(text)
    result = _breaking(tree)
    assert result.returncode != 0 and "language_code" in result.stdout + result.stderr
