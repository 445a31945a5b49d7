"""Job records in Redis, shared by every server replica and Celery worker.

Every transition is one Lua script, so it is atomic against every other replica and worker,
and each one publishes the new record on the job's pub/sub channel in the same step:
watchers (WatchJob, a worker waiting for a cancel) wake on events, never by polling.

Keys (``p`` is ``settings.jobs.key_prefix``; every key has a TTL)::

    p job:<id>     hash: the JobRecord fields
    p spec:<id>    the submit request, serialized (audio removed); deleted when the job ends
    p audio:<id>   the uploaded audio blob (the broker message carries only the id)
    p result:<id>  the serialized result, for result_ttl_s
    p lease:<id>   the running owner's name, renewed every lease_ttl_s / 3
    p index        sorted set of job ids by create time (ListJobs)
    p running      set of RUNNING job ids (the orphan sweep)
    channel p events:<id>

The orphan sweep reads keys it cannot declare up front, so this needs a standalone or
replicated Redis, not Redis Cluster.

Replication is asynchronous, so a failover can lose the last writes the master answered.
With ``replica_acks`` > 0 each transition runs on one connection followed by ``WAIT``, and
fails (:class:`NotReplicatedError`, a connection error: UNAVAILABLE to a caller, a retry to a
worker) unless that many replicas hold it; :meth:`RedisJobStore.confirm_replicated` does the
same for writes made by other clients of the same master (the Celery message).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from speech_jobs.records import TERMINAL_STATES, JobRecord, JobState
from speech_jobs.store import MAX_LIST, StartDecision, Started
from speech_platform.config import JobsSettings, RedisConnectionSettings
from speech_platform.redis_connection import (
    async_redis,
    close_async_redis,
    reconnect_retry,
    redis_target,
)

log = logging.getLogger(__name__)

# Shared by every script: publishes the record (as JSON of its fields) on the job's channel.
_PUBLISH = """
local function record(key)
  return redis.call('HGETALL', key)
end
local function publish(key, channel)
  local fields = redis.call('HGETALL', key)
  local event = {}
  for i = 1, #fields, 2 do event[fields[i]] = fields[i + 1] end
  redis.call('PUBLISH', channel, cjson.encode(event))
end
local function touch(key, now)
  redis.call('HSET', key, 'update_time', now)
  redis.call('HINCRBY', key, 'version', 1)
end
"""

# KEYS: job, spec, audio, index
# ARGV: id, kind, now, ttl, spec, audio, has_audio, channel, principal, public_id
_CREATE = _PUBLISH + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, record(KEYS[1])}
end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'kind', ARGV[2], 'state', '1',
  'progress', '0', 'error', '', 'create_time', ARGV[3], 'update_time', ARGV[3],
  'owner', '', 'attempts', '0', 'version', '1', 'principal', ARGV[9], 'public_id', ARGV[10])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4])
if ARGV[7] == '1' then
  redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[4])
end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
publish(KEYS[1], ARGV[8])
return {1, record(KEYS[1])}
"""

# KEYS: job, lease, running   ARGV: id, owner, now, lease_ms, channel
_START = _PUBLISH + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing'}
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == '3' or state == '4' or state == '5' then
  return {'finished', record(KEYS[1])}
end
if state == '2' then
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[2] then
    return {'duplicate', record(KEYS[1])}
  end
end
redis.call('HSET', KEYS[1], 'state', '2', 'owner', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
touch(KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
publish(KEYS[1], ARGV[5])
return {'run', record(KEYS[1])}
"""

# KEYS: job, lease   ARGV: owner, progress (or '' for a heartbeat), now, lease_ms, channel
_PROGRESS = _PUBLISH + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return nil
end
if redis.call('HGET', KEYS[1], 'state') == '2'
    and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
  if ARGV[2] ~= '' and tonumber(ARGV[2]) > tonumber(redis.call('HGET', KEYS[1], 'progress')) then
    redis.call('HSET', KEYS[1], 'progress', ARGV[2])
    touch(KEYS[1], ARGV[3])
    publish(KEYS[1], ARGV[5])
  end
end
return record(KEYS[1])
"""

# KEYS: job, lease, spec, audio, result, running
# ARGV: id, owner, state, error, now, ttl, result, has_result, channel
_FINISH = _PUBLISH + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return nil
end
if redis.call('HGET', KEYS[1], 'state') == '2'
    and redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'state', ARGV[3], 'error', ARGV[4], 'owner', '')
  if ARGV[3] == '3' then
    redis.call('HSET', KEYS[1], 'progress', '1.0')
  end
  touch(KEYS[1], ARGV[5])
  if ARGV[8] == '1' then
    redis.call('SET', KEYS[5], ARGV[7], 'EX', ARGV[6])
  end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('SREM', KEYS[6], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  publish(KEYS[1], ARGV[9])
end
return record(KEYS[1])
"""

# KEYS: job, lease, running   ARGV: id, owner, now, channel
_REQUEUE = _PUBLISH + """
if redis.call('HGET', KEYS[1], 'state') == '2'
    and redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'state', '1', 'owner', '')
  touch(KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  publish(KEYS[1], ARGV[4])
  return 1
end
return 0
"""

# KEYS: job, lease, spec, audio, running   ARGV: id, now, ttl, channel
_CANCEL = _PUBLISH + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return nil
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == '1' or state == '2' then
  redis.call('HSET', KEYS[1], 'state', '5', 'owner', '')
  touch(KEYS[1], ARGV[2])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('SREM', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  publish(KEYS[1], ARGV[4])
end
return record(KEYS[1])
"""

# KEYS: running   ARGV: prefix, now
_RECLAIM = _PUBLISH + """
local reclaimed = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. 'job:' .. id
  if redis.call('HGET', key, 'state') ~= '2' then
    redis.call('SREM', KEYS[1], id)
  elseif redis.call('EXISTS', ARGV[1] .. 'lease:' .. id) == 0 then
    redis.call('HSET', key, 'state', '1', 'owner', '')
    touch(key, ARGV[2])
    redis.call('SREM', KEYS[1], id)
    publish(key, ARGV[1] .. 'events:' .. id)
    table.insert(reclaimed, record(key))
  end
end
return reclaimed
"""


class NotReplicatedError(RedisConnectionError):
    """Fewer replicas than ``replica_acks`` confirmed a write in time: it may not survive a
    failover, so it does not count as done (retrying it is harmless)."""


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisJobStore:
    """The JobStore on Redis; see the module docstring for the keys."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        result_ttl_s: int,
        active_ttl_s: int,
        lease_ttl_s: float,
        resync_s: float = 30.0,
        replica_acks: int = 0,
        replica_ack_timeout_ms: int = 2000,
    ) -> None:
        self._redis = client
        self._replica_acks = replica_acks
        self._replica_ack_timeout_ms = replica_ack_timeout_ms
        self._prefix = prefix
        self._result_ttl_s = int(result_ttl_s)
        #: Unfinished jobs (and their audio) outlive any possible run, then expire.
        self._active_ttl_s = int(active_ttl_s)
        self._lease_ms = int(lease_ttl_s * 1000)
        self._resync_s = resync_s
        # Answered to a client, who retries on failure: those need the replicas. A worker's
        # transitions only wait for them (and log), so a slow replica never stops a job.
        self._create = self._replicated(client.register_script(_CREATE), strict=True)
        self._start = self._replicated(client.register_script(_START))
        self._progress = client.register_script(_PROGRESS)  # a lost heartbeat costs nothing
        self._finish = self._replicated(client.register_script(_FINISH))
        self._requeue = self._replicated(client.register_script(_REQUEUE))
        self._cancel = self._replicated(client.register_script(_CANCEL), strict=True)
        self._reclaim = self._replicated(client.register_script(_RECLAIM))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        result_ttl_s: int,
        active_ttl_s: int,
        lease_ttl_s: float,
        connection: RedisConnectionSettings | None = None,
        replica_acks: int = 0,
        replica_ack_timeout_ms: int = 2000,
        retry_s: float = 10.0,
    ) -> RedisJobStore:
        """``url``: one server or Sentinels, TLS or not (speech_platform/redis_connection.py);
        ``connection`` adds the password and certificates."""
        client = async_redis(
            redis_target(url, connection),
            socket_connect_timeout=5.0,
            # A dropped connection (a failover) is retried on a new one for retry_s; every
            # script is safe to run twice (each checks the state it moves from).
            retry=reconnect_retry(retry_s),
            # Bounds every command, so a hung Redis fails requests instead of holding them;
            # the pub/sub reads pass their own timeouts.
            socket_timeout=30.0,
            health_check_interval=30,
        )
        return cls(
            client,
            prefix=prefix,
            result_ttl_s=result_ttl_s,
            active_ttl_s=active_ttl_s,
            lease_ttl_s=lease_ttl_s,
            resync_s=max(lease_ttl_s, 5.0),
            replica_acks=replica_acks,
            replica_ack_timeout_ms=replica_ack_timeout_ms,
        )

    @classmethod
    def for_settings(cls, jobs: JobsSettings) -> RedisJobStore:
        """The store the server and the workers share, as the jobs settings describe it."""
        return cls.from_url(
            jobs.broker_url,
            prefix=jobs.key_prefix,
            result_ttl_s=jobs.result_ttl_s,
            active_ttl_s=jobs.visibility_timeout_s + jobs.result_ttl_s,
            lease_ttl_s=jobs.lease_ttl_s,
            connection=jobs.redis,
            replica_acks=jobs.replica_acks,
            replica_ack_timeout_ms=jobs.replica_ack_timeout_ms,
            retry_s=jobs.redis_retry_s,
        )

    # -- durability

    def _replicated(self, script: AsyncScript, *, strict: bool = False) -> Any:
        """The script as a call that, with replica_acks, also waits for the replicas;
        ``strict``: and fails (NotReplicatedError) when too few confirm.

        WAIT counts the writes of its own connection, so the script and the WAIT share one
        (a single-connection client over the same pool)."""
        if not self._replica_acks:
            return script

        async def run(keys: Sequence[Any], args: Sequence[Any]) -> Any:
            async with self._redis.client() as connection:
                result = await script(keys=keys, args=args, client=connection)
                try:
                    await self._wait_for_replicas(connection)
                except NotReplicatedError as error:
                    if strict:
                        raise
                    log.warning("job state change not yet replicated", extra={"error": str(error)})
            return result

        return run

    async def confirm_replicated(self) -> None:
        """Waits until the replicas hold every write the master took before this call, also
        other clients' (the Celery message): a PUBLISH on our connection (replicated, read
        by nobody) moves our replication offset past them, then WAIT. No-op without
        replica_acks."""
        if not self._replica_acks:
            return
        async with self._redis.client() as connection:
            await connection.publish(f"{self._prefix}replication", "1")
            await self._wait_for_replicas(connection)

    async def _wait_for_replicas(self, connection: aioredis.Redis) -> None:
        acked = int(await connection.wait(self._replica_acks, self._replica_ack_timeout_ms))
        if acked < self._replica_acks:
            raise NotReplicatedError(
                f"{acked} of {self._replica_acks} Redis replicas confirmed the write within "
                f"{self._replica_ack_timeout_ms} ms"
            )

    # -- key names

    def _key(self, kind: str, job_id: str) -> str:
        return f"{self._prefix}{kind}:{job_id}"

    def channel(self, job_id: str) -> str:
        return self._key("events", job_id)

    # -- reads

    async def get(self, job_id: str) -> JobRecord | None:
        fields = await self._redis.hgetall(self._key("job", job_id))
        return JobRecord.from_fields(fields) if fields else None

    async def spec(self, job_id: str) -> bytes | None:
        return await self._get_bytes(self._key("spec", job_id))

    async def audio(self, job_id: str) -> bytes | None:
        return await self._get_bytes(self._key("audio", job_id))

    async def result(self, job_id: str) -> bytes | None:
        return await self._get_bytes(self._key("result", job_id))

    async def _get_bytes(self, key: str) -> bytes | None:
        value: Any = await self._redis.get(key)
        return bytes(value) if value is not None else None

    async def list_jobs(
        self, limit: int, state: JobState | None = None, principal: str | None = None
    ) -> list[JobRecord]:
        """Walks the one index newest first, keeping ``principal``'s jobs when given (the
        walk is bounded by the index, which holds only jobs younger than their TTL)."""
        limit = min(limit, MAX_LIST)
        index = f"{self._prefix}index"
        found: list[JobRecord] = []
        offset, chunk = 0, max(limit, 100)
        while len(found) < limit:
            ids: list[Any] = list(await self._redis.zrevrange(index, offset, offset + chunk - 1))
            if not ids:
                break
            offset += len(ids)
            pipe = self._redis.pipeline(transaction=False)
            for raw in ids:
                pipe.hgetall(self._key("job", raw.decode()))
            rows = await pipe.execute()
            stale = [raw for raw, fields in zip(ids, rows, strict=True) if not fields]
            if stale:
                await self._redis.zrem(index, *stale)
                offset -= len(stale)
            for fields in rows:
                if fields:
                    record = JobRecord.from_fields(fields)
                    if (state is None or record.state == state) and (
                        principal is None or record.principal == principal
                    ):
                        found.append(record)
        return found[:limit]

    async def watch(self, job_id: str) -> AsyncGenerator[JobRecord, None]:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.channel(job_id))
            # Read the confirmation first: only then can no event fall between the
            # subscription and the read of the current record.
            confirmation = await pubsub.get_message(timeout=10.0)
            if confirmation is None or confirmation.get("type") != "subscribe":
                raise ConnectionError(f"no subscribe confirmation for {job_id}")
            seen = await self.get(job_id)
            if seen is None:
                return
            yield seen
            while not seen.terminal:
                latest = await self._next_event(pubsub, job_id)
                if latest is None:  # no event for a while: re-read, in case one was lost
                    latest = await self.get(job_id)
                    if latest is None:
                        return
                if latest.version > seen.version:
                    seen = latest
                    yield seen
        finally:
            await pubsub.aclose()

    async def _next_event(self, pubsub: Any, job_id: str) -> JobRecord | None:
        """The newest record among the events waiting (blocking for the first one)."""
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._resync_s)
        newest: JobRecord | None = None
        while message is not None:
            if message.get("type") == "message":
                record = JobRecord.from_fields(json.loads(message["data"]))
                if newest is None or record.version > newest.version:
                    newest = record
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        return newest

    # -- transitions

    async def create(
        self, record: JobRecord, spec: bytes, audio: bytes | None = None
    ) -> tuple[JobRecord, bool]:
        job_id = record.job_id
        created, fields = await self._create(
            keys=[
                self._key("job", job_id),
                self._key("spec", job_id),
                self._key("audio", job_id),
                f"{self._prefix}index",
            ],
            args=[
                job_id,
                int(record.kind),
                repr(record.create_time),
                self._active_ttl_s,
                spec,
                audio or b"",
                "1" if audio is not None else "0",
                self.channel(job_id),
                record.principal,
                record.public_id,
            ],
        )
        return JobRecord.from_fields(_pairs(fields)), bool(created)

    async def start(self, job_id: str, owner: str) -> Started:
        reply = await self._start(
            keys=[self._key("job", job_id), self._key("lease", job_id), f"{self._prefix}running"],
            args=[job_id, owner, repr(time.time()), self._lease_ms, self.channel(job_id)],
        )
        decision = StartDecision(reply[0].decode())
        record = JobRecord.from_fields(_pairs(reply[1])) if len(reply) > 1 else None
        return Started(decision, record)

    async def progress(self, job_id: str, owner: str, progress: float) -> JobRecord | None:
        return await self._touch(job_id, owner, repr(float(min(max(progress, 0.0), 1.0))))

    async def heartbeat(self, job_id: str, owner: str) -> JobRecord | None:
        return await self._touch(job_id, owner, "")

    async def _touch(self, job_id: str, owner: str, progress: str) -> JobRecord | None:
        fields = await self._progress(
            keys=[self._key("job", job_id), self._key("lease", job_id)],
            args=[owner, progress, repr(time.time()), self._lease_ms, self.channel(job_id)],
        )
        return JobRecord.from_fields(_pairs(fields)) if fields else None

    async def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        *,
        error: str = "",
        result: bytes | None = None,
    ) -> JobRecord | None:
        if state not in TERMINAL_STATES:
            raise ValueError(f"finish() needs a final state, not {state.name}")
        fields = await self._finish(
            keys=[
                self._key("job", job_id),
                self._key("lease", job_id),
                self._key("spec", job_id),
                self._key("audio", job_id),
                self._key("result", job_id),
                f"{self._prefix}running",
            ],
            args=[
                job_id,
                owner,
                int(state),
                error,
                repr(time.time()),
                self._result_ttl_s,
                result or b"",
                "1" if result is not None else "0",
                self.channel(job_id),
            ],
        )
        return JobRecord.from_fields(_pairs(fields)) if fields else None

    async def requeue(self, job_id: str, owner: str) -> bool:
        done = await self._requeue(
            keys=[self._key("job", job_id), self._key("lease", job_id), f"{self._prefix}running"],
            args=[job_id, owner, repr(time.time()), self.channel(job_id)],
        )
        return bool(done)

    async def cancel(self, job_id: str) -> JobRecord | None:
        fields = await self._cancel(
            keys=[
                self._key("job", job_id),
                self._key("lease", job_id),
                self._key("spec", job_id),
                self._key("audio", job_id),
                f"{self._prefix}running",
            ],
            args=[job_id, repr(time.time()), self._result_ttl_s, self.channel(job_id)],
        )
        return JobRecord.from_fields(_pairs(fields)) if fields else None

    async def reclaim_orphans(self) -> list[JobRecord]:
        rows = await self._reclaim(
            keys=[f"{self._prefix}running"], args=[self._prefix, repr(time.time())]
        )
        return [JobRecord.from_fields(_pairs(row)) for row in rows]

    async def close(self) -> None:
        await close_async_redis(self._redis)
