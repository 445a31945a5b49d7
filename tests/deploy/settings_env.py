"""The Settings a container of the manifests would run with, built by the app's own loader.

The app ignores unknown SPEECH_ variables (pydantic-settings, extra="ignore"), so a misspelt
name in a manifest would silently keep the default: every SPEECH_ name is checked against the
settings model first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from speech_platform.config import Settings
from tests.deploy.manifests import Obj, Rendered

PREFIX = "SPEECH_"


def container_env(overlay: Rendered, container: Obj) -> dict[str, str]:
    """envFrom ConfigMaps first, then env (which wins), literal values only."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"{container['name']}: only configMapRef envFrom is expected"
        env.update(overlay.get("ConfigMap", ref["name"])["data"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", "")
    return env


def check_setting_name(name: str) -> None:
    """Raises AssertionError unless SPEECH_A__B names a field of Settings."""
    parts = name[len(PREFIX):].lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        assert field is not None, f"{name}: {part!r} is not a setting of {model.__name__}"
        if depth < len(parts) - 1:
            annotation = field.annotation
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{name}: {part!r} has no sub-settings"
            )
            model = annotation


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith(PREFIX) or key == "REDIS_URL":
                del os.environ[key]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def effective_settings(overlay: Rendered, workload: Obj, container: Obj) -> Settings:
    env = container_env(overlay, container)
    for name in env:
        if name.startswith(PREFIX) and name != "SPEECH_CONFIG_FILE":
            check_setting_name(name)
    assert "SPEECH_CONFIG_FILE" not in env, "the manifests configure through env only"
    with _environment(env):
        return Settings()


def field_default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].get_default(call_default_factory=True)
