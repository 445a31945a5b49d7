"""Every object of every overlay is valid for its schema, and the validation has teeth."""

from __future__ import annotations

import copy

import pytest

from tests.deploy.manifests import NAMESPACE, Rendered
from tests.deploy.schemas import SchemaError, validate


def test_every_object_is_valid(overlay: Rendered) -> None:
    failures = []
    for obj in overlay.objects:
        try:
            validate(obj)
        except SchemaError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)


def test_every_object_lives_in_the_platform_namespace(overlay: Rendered) -> None:
    for obj in overlay.objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_object_names_are_unique_per_kind(overlay: Rendered) -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for o in overlay.objects]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("kind", "name", "mutate"),
    [
        # a misspelt field in a core kind (strict OpenAPI schema)
        ("Deployment", "stt", lambda o: o["spec"]["template"]["spec"].update(restartPolcy="x")),
        # a named port where the gRPC probe needs a number
        (
            "Deployment", "stt",
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]
            .update(port="grpc"),
        ),
        # a misspelt ScaledObject field (the CRD model alone would silently drop it)
        ("ScaledObject", "worker-synthesis", lambda o: o["spec"].update(minReplicaCont=0)),
        # KEDA trigger metadata values must be strings
        (
            "ScaledObject", "worker-synthesis",
            lambda o: o["spec"]["triggers"][0]["metadata"].update(listLength=4),
        ),
        # a PrometheusRule whose rule lacks its expression
        (
            "PrometheusRule", "speech-platform",
            lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr"),
        ),
    ],
)
def test_validation_rejects_broken_objects(
    rendered_overlays: dict[str, Rendered], kind: str, name: str, mutate
) -> None:
    broken = copy.deepcopy(rendered_overlays["cpu"].get(kind, name))
    validate(copy.deepcopy(broken))
    mutate(broken)
    with pytest.raises(SchemaError):
        validate(broken)


def test_unknown_kinds_are_not_waved_through() -> None:
    with pytest.raises(SchemaError, match="no schema known"):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
