"""The Redis deployment as issue 15 asks: no password on any command line, TLS and protected
mode, three Sentinels per group, and jobs in a Redis of their own that never evicts.

The checks read the rendered overlays: the ConfigMap's config files and start scripts, every
container's command line and env, and the settings each speech container ends up with.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from speech_platform.redis_connection import redis_target
from tests.deploy.manifests import NAMESPACE, Obj, Rendered, containers, pod_spec
from tests.deploy.settings_env import container_env, effective_settings

GROUPS = {"redis-cache": "cache", "redis-jobs": "jobs"}


def redis_config(overlay: Rendered) -> dict[str, str]:
    return overlay.get("ConfigMap", "redis-config")["data"]


def conf_lines(text: str) -> dict[str, str]:
    """A Redis config file as {directive: rest of line} (the last one wins, as in Redis)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found[key] = value.strip()
    return found


def effective_conf(overlay: Rendered, role_conf: str) -> dict[str, str]:
    """The role's file with its include expanded (include first, the role's lines after)."""
    data = redis_config(overlay)
    lines: dict[str, str] = {}
    for key, value in conf_lines(data[role_conf]).items():
        if key == "include":
            lines |= conf_lines(data[Path(value).name])
        else:
            lines[key] = value
    return lines


def env_value(container: Obj, name: str) -> str:
    return next(e["value"] for e in container["env"] if e["name"] == name)


def secret_env_names(container: Obj) -> set[str]:
    return {e["name"] for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})}


def test_no_password_on_any_command_line_or_in_any_url(overlay: Rendered) -> None:
    """A secret read into env may be used by the process (REDISCLI_AUTH, REDIS_PASSWORD), but
    never expanded into a command line or another variable, where ps or a URL shows it."""
    for workload in overlay.workloads():
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            words = [*container.get("command", []), *container.get("args", [])]
            probes = [container.get(p, {}).get("exec", {}).get("command", [])
                      for p in ("readinessProbe", "livenessProbe", "startupProbe")]
            words += [w for probe in probes for w in probe]
            for name in secret_env_names(container):
                assert not any(f"$({name})" in w or f"${name}" in w for w in words), where
                assert not any(f"$({name})" in str(e.get("value", ""))
                               for e in container.get("env", [])), where
            assert not any(re.search(r"--requirepass|--masterauth|(^|\s)-a(\s|$)", w)
                           for w in words), where
            for key, value in container_env(overlay, container).items():
                if "://" in value:
                    assert "@" not in value, f"{where}: {key} carries credentials"


def test_passwords_reach_redis_through_config_files_written_at_start(overlay: Rendered) -> None:
    data = redis_config(overlay)
    for script in ("redis-start.sh", "sentinel-start.sh"):
        text = data[script]
        assert "/etc/redis-secret/password" in text, script
        assert "umask 077" in text, script  # the written config is readable by Redis alone
        assert re.search(r"exec redis-server /run/\w+/\w+\.conf", text), script
        assert "requirepass ${REDISCLI_AUTH}" in text, script
    assert "masterauth ${REDISCLI_AUTH}" in data["redis-start.sh"]
    assert "sentinel auth-pass" in data["sentinel-start.sh"]
    assert "sentinel sentinel-pass" in data["sentinel-start.sh"]


def test_start_scripts_are_valid_shell(overlay: Rendered, tmp_path: Path) -> None:
    shell = shutil.which("sh")
    assert shell
    for name, text in redis_config(overlay).items():
        if name.endswith(".sh"):
            script = tmp_path / name
            script.write_text(text)
            checked = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
            assert checked.returncode == 0, f"{name}: {checked.stderr}"


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_group_is_tls_only_with_protected_mode(overlay: Rendered, group: str) -> None:
    conf = effective_conf(overlay, f"{GROUPS[group]}.conf")
    assert conf["protected-mode"] == "yes"
    assert conf["port"] == "0"  # no plaintext port
    assert conf["tls-port"] == "6379"
    assert conf["tls-replication"] == "yes"
    sentinel_script = redis_config(overlay)["sentinel-start.sh"]
    for line in ('"port 0"', '"tls-port 26379"', '"tls-replication yes"', '"protected-mode yes"'):
        assert f"echo {line}" in sentinel_script, line


def test_jobs_never_evict_and_the_cache_does(overlay: Rendered) -> None:
    jobs = effective_conf(overlay, "jobs.conf")
    assert jobs["maxmemory-policy"] == "noeviction"
    assert jobs["appendonly"] == "yes"  # a restarted master comes back with its jobs
    cache = effective_conf(overlay, "cache.conf")
    assert cache["maxmemory-policy"] == "allkeys-lru"


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_three_sentinels_per_group_with_a_majority_quorum(overlay: Rendered, group: str) -> None:
    statefulset = overlay.get("StatefulSet", group)
    assert statefulset["spec"]["replicas"] == 3
    names = [c["name"] for c in containers(statefulset)]
    assert names.count("sentinel") == 1  # one per pod: three in all, on different nodes
    (sentinel,) = [c for c in containers(statefulset) if c["name"] == "sentinel"]
    assert env_value(sentinel, "GROUP") == group
    monitor = re.search(r"sentinel monitor \$\{MASTER_NAME\} \$\{master\} 6379 (\d+)",
                        redis_config(overlay)["sentinel-start.sh"])
    assert monitor is not None
    quorum = int(monitor.group(1))
    assert 3 // 2 < quorum < 3  # a majority, and one lost Sentinel still fails over
    (redis,) = [c for c in containers(statefulset) if c["name"] == "redis"]
    assert env_value(redis, "ROLE_CONF") == f"{GROUPS[group]}.conf"
    budget = overlay.get("PodDisruptionBudget", group)
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("name", ["stt", "tts-piper", "tts-kokoro", "jobs",
                                  "worker-transcription", "worker-synthesis"])
def test_speech_pods_reach_their_own_group_through_its_sentinels(
    overlay: Rendered, name: str
) -> None:
    deployment = overlay.get("Deployment", name)
    (container,) = containers(deployment)
    settings = effective_settings(overlay, deployment, container)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    for url, connection, group in (
        (settings.cache.redis_url, settings.cache.redis, "redis-cache"),
        (settings.jobs.broker_url, settings.jobs.redis, "redis-jobs"),
    ):
        target = redis_target(url)  # no password in the URL, only in the file
        assert target.sentinel and target.tls is not None and not target.password
        statefulset = overlay.get("StatefulSet", group)
        (sentinel,) = [c for c in containers(statefulset) if c["name"] == "sentinel"]
        assert target.master_name == env_value(sentinel, "MASTER_NAME")
        assert [h for h, _ in target.hosts] == [
            f"{group}-{i}.{group}-headless.{NAMESPACE}.svc" for i in range(3)
        ]
        assert {p for _, p in target.hosts} == {26379}
        for path, secret in ((connection.password_file, "speech-redis"),
                             (connection.tls_ca_file, "speech-redis-tls")):
            volume = volumes[mounts[str(Path(path).parent)]]
            assert volume["secret"]["secretName"] == secret, path
    assert settings.jobs.replica_acks == 1  # an answered submit survives a failover
