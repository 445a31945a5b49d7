"""One way to reach Redis, for every client: the cache, the job store, the Celery broker and
its result backend.

A URL says where (one server, or Sentinels that name the master) and whether the link is
TLS; :class:`~speech_platform.config.RedisConnectionSettings` adds the password (from a
mounted file, so it never sits on a command line) and the certificates. This module turns
the two into a :class:`RedisTarget`, then into each library's own form:

* :func:`async_redis`: a redis.asyncio client; for Sentinel, one whose connections ask the
  Sentinels for the master's address whenever they (re)connect, so after a failover the next
  connection reaches the new master (a dead or demoted master's connections fail first: a
  reset socket, or READONLY, which redis-py turns into a reconnect);
* :func:`celery_redis`: the broker/backend URL, transport options and ssl dict that kombu's
  ``redis``/``sentinel`` transports and Celery's Redis/Sentinel result backends take.

URL shapes (``[user:password@]`` is optional everywhere, ports default to 6379 / 26379)::

    redis://host:6379/0                                  one server
    rediss://host:6379/0                                 one server, TLS
    sentinel://s1:26379,s2:26379,s3:26379/mymaster/0     Sentinels, plain
    sentinels://s1:26379,s2:26379,s3:26379/mymaster/0    Sentinels and master over TLS

``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile`` in the query string are honoured as
redis-py honours them; the settings' TLS files win over them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from speech_platform.config import RedisConnectionSettings

DIRECT_SCHEMES: Final = {"redis": False, "rediss": True}
SENTINEL_SCHEMES: Final = {"sentinel": False, "sentinels": True}
DEFAULT_PORT: Final = 6379
DEFAULT_SENTINEL_PORT: Final = 26379


class RedisUrlError(ValueError):
    """A Redis URL that none of the supported shapes matches; the message says which part."""


@dataclass(frozen=True)
class TlsFiles:
    """TLS is on when a target has one of these; empty names mean the system's CAs and no
    client certificate."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class RedisTarget:
    """Where a Redis is and how to talk to it, whichever library connects."""

    hosts: tuple[tuple[str, int], ...]
    #: Sentinel's name for the master; empty for one server named directly.
    master_name: str = ""
    db: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    tls: TlsFiles | None = None
    #: Whether the Sentinels want the same credentials as the servers.
    sentinel_auth: bool = True

    @property
    def sentinel(self) -> bool:
        return bool(self.master_name)

    def describe(self) -> str:
        """For logs and errors: no password."""
        where = ",".join(f"{h}:{p}" for h, p in self.hosts)
        kind = f"sentinel master {self.master_name!r} via {where}" if self.sentinel else where
        return f"{kind} db {self.db}{' (tls)' if self.tls else ''}"


def redis_target(url: str, settings: RedisConnectionSettings | None = None) -> RedisTarget:
    """Parses ``url`` and applies the credentials and TLS files of ``settings``."""
    settings = settings or RedisConnectionSettings()
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in DIRECT_SCHEMES:
        tls_on, default_port = DIRECT_SCHEMES[scheme], DEFAULT_PORT
    elif scheme in SENTINEL_SCHEMES:
        tls_on, default_port = SENTINEL_SCHEMES[scheme], DEFAULT_SENTINEL_PORT
    else:
        raise RedisUrlError(
            f"unsupported Redis URL scheme {parts.scheme!r}: use redis://, rediss://, "
            "sentinel:// or sentinels://"
        )
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    url_user, _, url_password = userinfo.partition(":")
    hosts = tuple(_host_port(item, default_port, url) for item in hostlist.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    master_name = ""
    if scheme in SENTINEL_SCHEMES:
        if not path:
            raise RedisUrlError(f"a Sentinel URL names the master: {scheme}://HOSTS/MASTER[/DB]")
        master_name, path = path[0], path[1:]
    elif len(hosts) != 1:
        raise RedisUrlError(f"{scheme}:// names one server; use sentinel:// for several")
    if len(path) > 1 or (path and not path[0].isdigit()):
        raise RedisUrlError(f"the database in {scheme}:// URLs is a number, got {'/'.join(path)!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    tls = None
    if tls_on:
        tls = TlsFiles(
            ca_file=settings.tls_ca_file or query.get("ssl_ca_certs", ""),
            cert_file=settings.tls_cert_file or query.get("ssl_certfile", ""),
            key_file=settings.tls_key_file or query.get("ssl_keyfile", ""),
        )
    return RedisTarget(
        hosts=hosts,
        master_name=master_name,
        db=int(path[0]) if path else 0,
        username=settings.username or unquote(url_user),
        password=_password(settings) or unquote(url_password),
        tls=tls,
        sentinel_auth=settings.sentinel_auth,
    )


def _host_port(item: str, default_port: int, url: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
    if not host:
        raise RedisUrlError(f"no host in Redis URL {_without_password(url)!r}")
    if port and not port.isdigit():
        raise RedisUrlError(f"bad port {port!r} in Redis URL {_without_password(url)!r}")
    return host, int(port) if port else default_port


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***{at}{hosts}" if at else url


def _password(settings: RedisConnectionSettings) -> str:
    if settings.password_file:
        return Path(settings.password_file).read_text().strip()
    return settings.password


def tls_options(target: RedisTarget) -> dict[str, Any]:
    """redis-py's TLS keywords: certificates always verified (CA file, else system CAs)."""
    if target.tls is None:
        return {}
    options: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required"}
    if target.tls.ca_file:
        options["ssl_ca_certs"] = target.tls.ca_file
    if target.tls.cert_file:
        options["ssl_certfile"] = target.tls.cert_file
    if target.tls.key_file:
        options["ssl_keyfile"] = target.tls.key_file
    return options


def _credentials(target: RedisTarget) -> dict[str, Any]:
    credentials: dict[str, Any] = {}
    if target.username:
        credentials["username"] = target.username
    if target.password:
        credentials["password"] = target.password
    return credentials


def sentinel_options(target: RedisTarget, socket_timeout_s: float) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: TLS as for the master, AUTH if they want it."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        **tls_options(target),
    }
    if target.sentinel_auth:
        options.update(_credentials(target))
    return options


def async_redis(
    target: RedisTarget, *, sentinel_timeout_s: float = 2.0, **client_options: Any
) -> aioredis.Redis:
    """A redis.asyncio client for the target (``client_options``: timeouts, retry, ...).

    For Sentinel, ``sentinel_timeout_s`` bounds each question to a Sentinel; the client's
    connections ask for the master's address each time they connect.
    """
    options = {**client_options, **_credentials(target), **tls_options(target), "db": target.db}
    if not target.sentinel:
        host, port = target.hosts[0]
        return aioredis.Redis(host=host, port=port, **options)
    manager = Sentinel(
        list(target.hosts), sentinel_kwargs=sentinel_options(target, sentinel_timeout_s)
    )
    client: aioredis.Redis = manager.master_for(target.master_name, **options)
    return client


#: Pauses between reconnection attempts grow from 0.1 s to this.
RECONNECT_PAUSE_CAP_S: Final = 0.5


def reconnect_retry(total_s: float) -> Retry:
    """Retries a command whose connection failed, for about ``total_s`` (pauses 0.1, 0.2,
    0.4, then 0.5 s): long enough to ride out a Sentinel failover, after which a new
    connection reaches the new master. Timeouts are not retried (a hung server would hold
    the caller for a multiple of the socket timeout)."""
    retries, waited = 0, 0.0
    while waited < total_s:
        retries += 1
        waited += min(RECONNECT_PAUSE_CAP_S, 0.05 * 2**retries)
    return Retry(
        ExponentialBackoff(cap=RECONNECT_PAUSE_CAP_S, base=0.05),
        retries,
        supported_errors=(RedisConnectionError,),
    )


def publish_retry_policy(total_s: float) -> dict[str, float]:
    """The same schedule as :func:`reconnect_retry`, as kombu's publish retry policy."""
    step = RECONNECT_PAUSE_CAP_S
    return {
        "max_retries": max(1, round(total_s / step)),
        "interval_start": 0.1,
        "interval_step": 0.2,
        "interval_max": step,
    }


async def close_async_redis(client: aioredis.Redis) -> None:
    """Closes the client and, for Sentinel, its connections to the Sentinels too."""
    pool = client.connection_pool
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


@dataclass(frozen=True)
class CeleryRedis:
    """What Celery takes for one Redis: ``url`` for broker_url and result_backend,
    ``transport_options`` to merge into broker_transport_options and
    result_backend_transport_options, ``ssl`` for broker_use_ssl and redis_backend_use_ssl."""

    url: str = field(repr=False)
    transport_options: dict[str, Any]
    ssl: dict[str, Any] | None


def celery_redis(target: RedisTarget, *, sentinel_timeout_s: float = 2.0) -> CeleryRedis:
    """kombu's ``redis://`` transport (with an ssl dict for TLS), or its ``sentinel://``
    transport: one ``sentinel://`` URL per Sentinel joined by ``;`` and the master's name
    in the transport options. Celery's result backends read the same three."""
    auth = ""
    if target.password:
        auth = f"{quote(target.username, safe='')}:{quote(target.password, safe='')}@"
    elif target.username:
        auth = f"{quote(target.username, safe='')}@"
    options: dict[str, Any] = {}
    if target.sentinel:
        url = ";".join(f"sentinel://{auth}{h}:{p}/{target.db}" for h, p in target.hosts)
        options = {
            "master_name": target.master_name,
            "sentinel_kwargs": sentinel_options(target, sentinel_timeout_s),
        }
    else:
        host, port = target.hosts[0]
        url = f"redis://{auth}{host}:{port}/{target.db}"
    use_ssl: dict[str, Any] | None = None
    if target.tls is not None:
        files = {k: v for k, v in tls_options(target).items() if k.endswith(("certs", "file"))}
        use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED, **files}
    return CeleryRedis(url=url, transport_options=options, ssl=use_ssl)
