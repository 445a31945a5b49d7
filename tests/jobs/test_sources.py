"""file:// job sources are read only under the configured roots, through one descriptor,
and every refusal reads the same (speech_jobs/sources.py), on the real file system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from speech_jobs.sources import check_readable, open_source, read_uri
from speech_platform.errors import InvalidArgument

LIMIT = 1000


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    (shared / "calls").mkdir(parents=True)
    (shared / "calls" / "a.wav").write_bytes(b"RIFF-a")
    return shared


def refusal(uri: str, roots: list[Path], limit: int = LIMIT) -> str:
    with pytest.raises(InvalidArgument) as refused:
        read_uri(uri, roots, limit)
    return refused.value.message.replace(repr(uri), "URI")


def test_a_file_under_a_root_is_read(root: Path) -> None:
    uri = (root / "calls" / "a.wav").as_uri()
    assert read_uri(uri, [root], LIMIT) == b"RIFF-a"
    check_readable(uri, [root], LIMIT)


def test_no_roots_means_no_file_sources(root: Path) -> None:
    message = refusal((root / "calls" / "a.wav").as_uri(), [])
    assert "file:// sources are off" in message and "jobs.file_roots" in message


def test_every_refusal_is_the_same_error(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"secret")
    (root / "calls" / "link.wav").symlink_to(outside)
    (root / "escape").symlink_to("/proc/self/root")
    (root / "up").symlink_to(tmp_path)
    (root / "big.wav").write_bytes(b"x" * (LIMIT + 1))
    (root / "empty.wav").write_bytes(b"")
    (root / "unreadable.wav").write_bytes(b"RIFF")
    (root / "unreadable.wav").chmod(0)
    os.mkfifo(root / "fifo.wav")
    cases = {
        "/etc/shadow": "file:///etc/shadow",
        "/etc/passwd": "file:///etc/passwd",
        "/proc/self/root": "file:///proc/self/root/etc/passwd",
        "../ traversal": (root.as_uri() + "/calls/../../secret.wav"),
        "encoded ../": (root.as_uri() + "/calls/%2e%2e/%2e%2e/secret.wav"),
        "missing": (root / "calls" / "missing.wav").as_uri(),
        "a directory": (root / "calls").as_uri(),
        "the root itself": root.as_uri(),
        "symlink to a file outside": (root / "calls" / "link.wav").as_uri(),
        "symlinked dir to /proc/self/root": (root / "escape" / "etc" / "passwd").as_uri(),
        "symlinked dir up": (root / "up" / "secret.wav").as_uri(),
        "too big": (root / "big.wav").as_uri(),
        "empty": (root / "empty.wav").as_uri(),
        "a fifo (would block)": (root / "fifo.wav").as_uri(),
        "a sibling sharing the root's prefix": (
            root.parent / (root.name + "2") / "a.wav"
        ).as_uri(),
    }
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        cases["unreadable"] = (root / "unreadable.wav").as_uri()
    messages = {name: refusal(uri, [root]) for name, uri in cases.items()}
    assert len(set(messages.values())) == 1, messages
    assert f"1 to {LIMIT} bytes" in next(iter(messages.values()))


def test_the_read_goes_through_the_descriptor_opened_after_the_checks(
    root: Path, tmp_path: Path
) -> None:
    """The race a path-based check loses: between the check and the read the file is
    swapped for a link to a secret. The read is the checked file's bytes regardless,
    because it reads the descriptor the checks were made on, never the name again."""
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"secret-bytes")
    target = root / "calls" / "a.wav"
    with open_source(target.as_uri(), [root], LIMIT) as source:
        target.unlink()
        target.symlink_to(secret)  # the swap, after every check passed
        assert source.read() == b"RIFF-a"
    # and a fresh open now refuses the link
    assert "1 to" in refusal(target.as_uri(), [root])


def test_a_directory_swapped_for_a_link_is_refused(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.wav").write_bytes(b"secret")
    uri = (root / "calls" / "a.wav").as_uri()
    assert read_uri(uri, [root], LIMIT) == b"RIFF-a"
    (root / "calls").rename(root / "old-calls")
    (root / "calls").symlink_to(elsewhere)
    assert "1 to" in refusal(uri, [root])


def test_a_file_that_grows_past_the_limit_after_opening_is_cut_off(root: Path) -> None:
    target = root / "growing.wav"
    target.write_bytes(b"x" * 10)
    with open_source(target.as_uri(), [root], LIMIT) as source:
        with target.open("ab") as grow:
            grow.write(b"y" * (LIMIT * 4))
        with pytest.raises(InvalidArgument):
            source.read()
