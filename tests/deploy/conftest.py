"""Fixtures of the deployment tests: the overlays rendered once per session."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import K8S, OVERLAYS, Rendered, render


@pytest.fixture(scope="session")
def rendered_overlays() -> dict[str, Rendered]:
    return {name: Rendered(name, render(K8S / "overlays" / name)) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered_overlays: dict[str, Rendered]) -> Rendered:
    rendered: Rendered = rendered_overlays[request.param]
    return rendered
