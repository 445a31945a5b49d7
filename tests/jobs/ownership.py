"""One check of job ownership, run against each jobs backend (local, Redis/Celery)."""

from __future__ import annotations

import grpc
import pytest

from speech.v1 import jobs_pb2, jobs_pb2_grpc


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    return refused.value.code()


async def check_ownership(
    stub: jobs_pb2_grpc.JobsStub, alice: str, bob: str, admin: str, job_id: str
) -> None:
    """alice, bob: tokens of two principals of those names; admin: an admin's token."""
    first = await stub.SubmitSynthesisJob(
        jobs_pb2.SubmitSynthesisJobRequest(texts=["Alice's text."], job_id=job_id),
        metadata=bearer(alice),
    )
    assert first.job.owner == "alice" and first.job.job_id == job_id
    # bob guesses alice's id: he cannot see, watch or cancel her job ...
    for call in (
        stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=bearer(bob)),
        stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), metadata=bearer(bob)),
        stub.GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id, owner="alice"), metadata=bearer(bob)
        ),
    ):
        assert await _code_of(call) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as watched:
        async for _ in stub.WatchJob(
            jobs_pb2.WatchJobRequest(job_id=job_id), metadata=bearer(bob)
        ):
            pass
    assert watched.value.code() == grpc.StatusCode.NOT_FOUND
    # ... and submitting the same id gives him a job of his own, not hers
    second = await stub.SubmitSynthesisJob(
        jobs_pb2.SubmitSynthesisJobRequest(texts=["Bob's text."], job_id=job_id),
        metadata=bearer(bob),
    )
    assert second.job.owner == "bob" and second.job.job_id == job_id
    listed = await stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(bob))
    assert {(j.owner, j.job_id) for j in listed.jobs} == {("bob", job_id)}
    nosy = await stub.ListJobs(jobs_pb2.ListJobsRequest(owner="alice"), metadata=bearer(bob))
    assert list(nosy.jobs) == []
    # alice's job is untouched by bob's cancel attempt and submit
    mine = await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=bearer(alice))
    assert mine.job.owner == "alice" and mine.job.state != jobs_pb2.JOB_STATE_CANCELLED
    # the admin sees both, and may act on either by naming the owner
    everyone = await stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(admin))
    assert {("alice", job_id), ("bob", job_id)} <= {(j.owner, j.job_id) for j in everyone.jobs}
    hers = await stub.GetJob(
        jobs_pb2.GetJobRequest(job_id=job_id, owner="alice"), metadata=bearer(admin)
    )
    assert hers.job.owner == "alice"
    cancelled = await stub.CancelJob(
        jobs_pb2.CancelJobRequest(job_id=job_id, owner="bob"), metadata=bearer(admin)
    )
    assert cancelled.job.owner == "bob"
    assert cancelled.job.state in (
        jobs_pb2.JOB_STATE_CANCELLED, jobs_pb2.JOB_STATE_SUCCEEDED
    )
