"""Job ids: chosen by the client (for idempotent submits) or generated here.

An id also names Redis keys and the Celery task, so its alphabet is kept to characters
that need no escaping anywhere: ``[A-Za-z0-9_-]``, at most 64.

Ids are per owner: the store keeps a job under ``scoped_id(owner, id)``, so a caller who
guesses another's id submits a job of its own instead of receiving the other's, and a
lookup can only ever reach the caller's own jobs.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from speech_platform.errors import InvalidArgument

MAX_JOB_ID_LENGTH = 64
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_job_id() -> str:
    """A random id (122 bits), so ids from many servers never collide."""
    return uuid.uuid4().hex


def check_job_id(job_id: str) -> str:
    """The id itself, or InvalidArgument saying what is wrong with it."""
    if not job_id:
        raise InvalidArgument("job_id is empty")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidArgument(
            f"job_id is {len(job_id)} characters; at most {MAX_JOB_ID_LENGTH} are allowed"
        )
    if not _JOB_ID.fullmatch(job_id):
        raise InvalidArgument(
            f"job_id {job_id!r} is malformed: use only letters, digits, '_' and '-'"
        )
    return job_id


#: Hex digits of the owner's digest in a scoped id (64 bits: owners never collide in practice).
OWNER_SCOPE_HEX = 16


def scoped_id(owner: str, job_id: str) -> str:
    """The store's id of ``owner``'s job ``job_id`` (same alphabet, at most 81 characters).

    >>> scoped_id("alice", "nightly") != scoped_id("bob", "nightly")
    True
    >>> scoped_id("alice", "nightly")[OWNER_SCOPE_HEX:]
    '-nightly'
    """
    scope = hashlib.sha256(owner.encode()).hexdigest()[:OWNER_SCOPE_HEX]
    return f"{scope}-{job_id}"
