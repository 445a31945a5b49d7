"""The one Redis URL shape every client reads: parsing, credentials, and what each library
is handed (servers: tests/jobs/test_redis_transport.py, the failover test)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from speech_platform.config import RedisConnectionSettings, load_settings
from speech_platform.redis_connection import (
    RedisUrlError,
    TlsFiles,
    celery_redis,
    publish_retry_policy,
    reconnect_retry,
    redis_target,
)


def test_one_server_plain_and_tls():
    plain = redis_target("redis://cache:6380/2")
    assert (plain.hosts, plain.db, plain.tls) == ((("cache", 6380),), 2, None)
    assert not plain.sentinel
    secure = redis_target("rediss://:s%40cret@cache/0?ssl_ca_certs=/ca.pem")
    assert secure.hosts == (("cache", 6379),)
    assert secure.password == "s@cret"
    assert secure.tls == TlsFiles(ca_file="/ca.pem")


def test_sentinel_urls_name_the_master_and_every_sentinel():
    target = redis_target("sentinel://s1:26380,s2,s3:26381/speech-jobs/3")
    assert target.hosts == (("s1", 26380), ("s2", 26379), ("s3", 26381))
    assert (target.master_name, target.db, target.tls) == ("speech-jobs", 3, None)
    assert redis_target("sentinels://s1/m").tls == TlsFiles()


def test_settings_password_file_wins_over_the_url(tmp_path: Path):
    secret = tmp_path / "password"
    secret.write_text("from-the-secret\n")
    settings = RedisConnectionSettings(
        password_file=str(secret), tls_ca_file="/etc/ca.crt", tls_cert_file="/c", tls_key_file="/k"
    )
    target = redis_target("rediss://:in-url@redis/0?ssl_ca_certs=/other", settings)
    assert target.password == "from-the-secret"
    assert target.tls == TlsFiles("/etc/ca.crt", "/c", "/k")
    assert "from-the-secret" not in repr(target) and "from-the-secret" not in target.describe()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://redis:6379", "unsupported Redis URL scheme"),
        ("sentinel://s1:26379,s2:26379", "names the master"),
        ("redis://a:1,b:2/0", "names one server"),
        ("redis://host:port/0", "bad port"),
        ("redis://host/zero", "is a number"),
        ("redis://:secret@/0", "no host"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, complaint: str):
    with pytest.raises(RedisUrlError, match=complaint) as failure:
        redis_target(url)
    assert "secret" not in str(failure.value)


def test_celery_gets_one_sentinel_url_per_sentinel_and_the_master_in_options():
    target = redis_target(
        "sentinels://:p%3Bw@s1:26379,s2:26380/speech-jobs/1",
        RedisConnectionSettings(tls_ca_file="/ca.crt"),
    )
    celery = celery_redis(target, sentinel_timeout_s=1.5)
    assert celery.url == "sentinel://:p%3Bw@s1:26379/1;sentinel://:p%3Bw@s2:26380/1"
    assert celery.transport_options["master_name"] == "speech-jobs"
    sentinel_kwargs = celery.transport_options["sentinel_kwargs"]
    assert sentinel_kwargs["password"] == "p;w" and sentinel_kwargs["ssl"] is True
    assert sentinel_kwargs["ssl_ca_certs"] == "/ca.crt"
    assert celery.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.crt"}
    direct = celery_redis(redis_target("redis://:pw@jobs-redis:6379/0"))
    assert (direct.url, direct.transport_options, direct.ssl) == (
        "redis://:pw@jobs-redis:6379/0", {}, None
    )


def test_sentinels_without_auth_get_no_password():
    target = redis_target(
        "sentinel://:pw@s1/m", RedisConnectionSettings(sentinel_auth=False)
    )
    assert "password" not in celery_redis(target).transport_options["sentinel_kwargs"]


def test_reconnection_covers_about_the_configured_time():
    retry = reconnect_retry(10.0)
    pauses = [min(0.5, 0.05 * 2**n) for n in range(1, retry._retries + 1)]
    assert 10.0 <= sum(pauses) < 10.5
    policy = publish_retry_policy(10.0)
    assert policy["max_retries"] * policy["interval_max"] >= 10.0


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPEECH_JOBS__BROKER_URL", "sentinel://redis-sentinel:26379/speech-jobs")
    monkeypatch.setenv("SPEECH_JOBS__REDIS__PASSWORD_FILE", "/var/run/secrets/redis/password")
    monkeypatch.setenv("SPEECH_CACHE__REDIS__TLS_CA_FILE", "/etc/redis-tls/ca.crt")
    settings = load_settings()
    assert settings.jobs.redis.password_file == "/var/run/secrets/redis/password"
    assert settings.cache.redis.tls_ca_file == "/etc/redis-tls/ca.crt"
    assert redis_target(settings.jobs.broker_url).master_name == "speech-jobs"
