"""Who is calling: every accepted credential names a principal.

A principal is a name with roles and a priority entitlement. Credentials, checked in this
order:

1. a bearer token (``authorization: Bearer <token>``) found among the configured ones
   (``auth.principals``, ``auth.principals_file``, the older ``server.auth_tokens``);
2. the verified client certificate under mTLS: its subject CN names the principal (an
   entry whose ``name`` or ``cert_common_name`` is that CN gives it roles and entitlement;
   any other CN the client CA signed is a principal of that name with the defaults).

With no principal, token or client CA configured, auth is off and every caller is the
``anonymous`` principal (so every caller shares one job namespace, as before principals).

``Authenticator.authenticate`` is the one check, for the gRPC interceptor and for any other
door (an HTTP front end passes the Authorization header and the CN of the TLS peer's
verified certificate); it raises ``Unauthenticated`` (no usable credential: gRPC
UNAUTHENTICATED, HTTP 401) or ``PermissionDenied`` (a credential not accepted: 403).
Tokens are compared by SHA-256 digest, so the process keeps no token it did not have to
and never logs one.

    >>> from speech_platform.config import AuthSettings, PrincipalSettings, Settings
    >>> auth = Authenticator.from_settings(AuthSettings(principals=[
    ...     PrincipalSettings(name="ops", token="t0ps3cret", roles=["admin"],
    ...                       max_priority="high")]), mtls=True)
    >>> who = auth.authenticate("Bearer t0ps3cret", None)
    >>> who.name, who.is_admin, who.max_priority
    ('ops', True, 2)
    >>> auth.authenticate(None, "ops").name  # the CN of a verified client certificate
    'ops'
    >>> auth.authenticate("Bearer guess", None)
    Traceback (most recent call last):
    ...
    speech_platform.errors.PermissionDenied: bearer token not accepted
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import TypeAdapter

from speech_platform import priority
from speech_platform.config import AuthSettings, PrincipalSettings, Settings
from speech_platform.errors import PermissionDenied, Unauthenticated

ADMIN = "admin"
ANONYMOUS_NAME = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    #: The highest batcher level its requests are served at (speech_platform.priority).
    max_priority: int = priority.NORMAL
    #: False for the anonymous caller of a server with auth off.
    authenticated: bool = True

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


_CURRENT: ContextVar[Principal | None] = ContextVar("speech_principal", default=None)


def current_principal() -> Principal | None:
    """The principal of the RPC being served in this context (None outside an RPC)."""
    return _CURRENT.get()


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Binds ``principal`` (and its priority entitlement) to the current context."""
    token = _CURRENT.set(principal)
    cap = priority.entitle(principal.max_priority)
    try:
        yield principal
    finally:
        cap.var.reset(cap)
        _CURRENT.reset(token)


def bind(principal: Principal) -> None:
    """Binds ``principal`` for the rest of the current task (one RPC's own task)."""
    _CURRENT.set(principal)
    priority.entitle(principal.max_priority)


def token_digest(token: str | bytes) -> bytes:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


class Authenticator:
    """Maps credentials to principals; built once from settings (see the module doc)."""

    def __init__(
        self,
        principals: Sequence[PrincipalSettings],
        *,
        legacy_tokens: Sequence[str] = (),
        mtls: bool = False,
        default_max_priority: str = "normal",
    ) -> None:
        default_level = priority.BY_NAME[default_max_priority]
        self.mtls = mtls
        self.anonymous = Principal(ANONYMOUS_NAME, frozenset(), default_level, False)
        self._default_level = default_level
        self._by_token: dict[bytes, Principal] = {}
        self._by_common_name: dict[str, Principal] = {}
        for entry in principals:
            principal = Principal(
                entry.name, frozenset(entry.roles), priority.BY_NAME[entry.max_priority]
            )
            for digest in _digests(entry):
                self._add_token(digest, principal)
            self._by_common_name[entry.cert_common_name or entry.name] = principal
        for token in legacy_tokens:
            digest = token_digest(token)
            name = f"token-{digest.hex()[:12]}"
            self._add_token(digest, Principal(name, max_priority=default_level))

    @classmethod
    def from_settings(
        cls, auth: AuthSettings, *, legacy_tokens: Sequence[str] = (), mtls: bool = False
    ) -> Authenticator:
        """From ``settings.auth`` (plus ``server.auth_tokens`` and whether the server asks
        for client certificates); reads ``auth.principals_file`` and ``token_env`` now."""
        entries = list(auth.principals)
        if auth.principals_file:
            entries += load_principals_file(Path(auth.principals_file))
        return cls(
            entries,
            legacy_tokens=legacy_tokens,
            mtls=mtls,
            default_max_priority=auth.default_max_priority,
        )

    @classmethod
    def for_server(cls, settings: Settings) -> Authenticator:
        """The authenticator every door of a server shares (gRPC, HTTP): ``auth``, the
        older ``server.auth_tokens``, and client certificates when mTLS is configured."""
        return cls.from_settings(
            settings.auth,
            legacy_tokens=settings.server.auth_tokens,
            mtls=bool(settings.server.tls.client_ca_file),
        )

    @property
    def enabled(self) -> bool:
        return bool(self._by_token) or self.mtls

    def authenticate(
        self, authorization_header: str | bytes | None, peer_cert_subject: str | None
    ) -> Principal:
        """The principal of a call: ``authorization_header`` as received ("Bearer ..."),
        ``peer_cert_subject`` the subject CN of the client certificate the TLS layer
        verified (None without one). Raises Unauthenticated or PermissionDenied."""
        if not self.enabled:
            return self.anonymous
        if authorization_header:
            return self._by_bearer(authorization_header)
        if peer_cert_subject and self.mtls:
            return self._by_common_name.get(peer_cert_subject) or Principal(
                peer_cert_subject, max_priority=self._default_level
            )
        wanted = "'authorization: Bearer <token>'"
        if self.mtls:
            wanted += " or a client certificate"
        raise Unauthenticated(f"missing credentials: send {wanted}")

    def _by_bearer(self, header: str | bytes) -> Principal:
        value = header.encode() if isinstance(header, str) else bytes(header)
        scheme, _, token = value.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        principal = self._by_token.get(token_digest(token))
        if principal is None:
            raise PermissionDenied("bearer token not accepted")
        return principal

    def _add_token(self, digest: bytes, principal: Principal) -> None:
        holder = self._by_token.get(digest)
        if holder is not None and holder.name != principal.name:
            raise ValueError(
                f"auth: principals {holder.name!r} and {principal.name!r} share a token"
            )
        self._by_token[digest] = principal


def _digests(entry: PrincipalSettings) -> Iterable[bytes]:
    if entry.token:
        yield token_digest(entry.token)
    if entry.token_sha256:
        yield bytes.fromhex(entry.token_sha256)
    if entry.token_env:
        value = os.environ.get(entry.token_env, "")
        if not value:
            raise ValueError(
                f"auth: principal {entry.name!r} names token_env {entry.token_env!r}, "
                "which is unset or empty"
            )
        yield token_digest(value)


_PRINCIPAL_LIST = TypeAdapter(list[PrincipalSettings])


def load_principals_file(path: Path) -> list[PrincipalSettings]:
    """A YAML (or JSON) list of principals, checked like the settings themselves."""
    data = yaml.safe_load(path.read_text()) or []
    return _PRINCIPAL_LIST.validate_python(data)
