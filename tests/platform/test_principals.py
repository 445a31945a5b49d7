"""The one authentication check every door uses (speech_platform.principals), and the
caller key and priority cap it gives an RPC."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from speech.v1 import common_pb2
from speech_platform.callers import caller_id
from speech_platform.config import AuthSettings, PrincipalSettings, load_settings
from speech_platform.errors import PermissionDenied, Unauthenticated
from speech_platform.principals import Authenticator, acting_as, current_principal
from speech_platform.priority import HIGH, LOW, NORMAL, from_proto


def test_auth_off_makes_every_caller_anonymous_with_the_default_cap() -> None:
    auth = Authenticator.for_server(load_settings())
    assert not auth.enabled
    who = auth.authenticate("Bearer anything", None)
    assert who.name == "anonymous" and not who.authenticated and who.max_priority == NORMAL
    # fair queuing then keys on the peer's host, not on a self-chosen token
    assert caller_id(who, "ipv4:10.1.2.3:5555") == "peer:10.1.2.3"


def test_missing_and_malformed_credentials_are_unauthenticated() -> None:
    auth = Authenticator([PrincipalSettings(name="a", token="t")])
    for header in (None, "", "Bearer", "Bearer ", "Basic dDp0", "t"):
        with pytest.raises(Unauthenticated):
            auth.authenticate(header, None)
    # a certificate subject counts only when the server verifies client certificates
    with pytest.raises(Unauthenticated):
        auth.authenticate(None, "a")
    with pytest.raises(PermissionDenied):
        auth.authenticate("Bearer T", None)  # tokens are exact
    assert auth.authenticate(b"bearer t", None).name == "a"  # the scheme is not


def test_mtls_subjects_map_to_listed_principals_or_to_their_own_name() -> None:
    auth = Authenticator(
        [PrincipalSettings(name="carol", cert_common_name="carol-laptop", roles=["admin"],
                           max_priority="high")],
        mtls=True,
        default_max_priority="low",
    )
    carol = auth.authenticate(None, "carol-laptop")
    assert (carol.name, carol.is_admin, carol.max_priority) == ("carol", True, HIGH)
    other = auth.authenticate(None, "billing")
    assert (other.name, other.is_admin, other.max_priority) == ("billing", False, LOW)
    with pytest.raises(Unauthenticated, match="client certificate"):
        auth.authenticate(None, None)


def test_token_sources_and_their_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEECH_TEST_TOKEN", "from-env")
    listed = tmp_path / "principals.yaml"
    digest = hashlib.sha256(b"from-file").hexdigest()
    listed.write_text(f"- {{name: filed, token_sha256: {digest}, max_priority: high}}\n")
    auth = Authenticator.from_settings(
        AuthSettings(
            principals=[PrincipalSettings(name="env", token_env="SPEECH_TEST_TOKEN")],
            principals_file=str(listed),
        ),
        legacy_tokens=["old"],
    )
    assert auth.authenticate("Bearer from-env", None).name == "env"
    assert auth.authenticate("Bearer from-file", None).max_priority == HIGH
    assert auth.authenticate("Bearer old", None).name.startswith("token-")
    monkeypatch.delenv("SPEECH_TEST_TOKEN")
    with pytest.raises(ValueError, match="SPEECH_TEST_TOKEN"):
        Authenticator([PrincipalSettings(name="env", token_env="SPEECH_TEST_TOKEN")])
    with pytest.raises(ValueError, match="share a token"):
        Authenticator([PrincipalSettings(name="a", token="same"),
                       PrincipalSettings(name="b", token="same")])
    listed.write_text("- {name: 'has space', token: x}\n")
    with pytest.raises(ValidationError):
        Authenticator.from_settings(AuthSettings(principals_file=str(listed)))


def test_a_principal_caps_the_priority_of_what_it_asks() -> None:
    auth = Authenticator([PrincipalSettings(name="batch", token="b", max_priority="low")])
    assert from_proto(common_pb2.PRIORITY_HIGH) == HIGH  # outside an RPC: uncapped
    with acting_as(auth.authenticate("Bearer b", None)) as batch:
        assert current_principal() == batch
        asked = [common_pb2.PRIORITY_HIGH, common_pb2.PRIORITY_NORMAL, common_pb2.PRIORITY_LOW]
        assert [from_proto(p) for p in asked] == [LOW, LOW, LOW]
    assert current_principal() is None and from_proto(common_pb2.PRIORITY_HIGH) == HIGH
