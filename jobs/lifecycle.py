"""The job lifecycle: which states a transition may start from (DESIGN §2).

Every transition in ``jobs.services`` and ``executions.services`` is one conditional UPDATE whose
WHERE clause names one of these sets; the row count says whether it happened.
"""

from __future__ import annotations

from jobs.models import Job

S = Job.Status

# The dispatcher releases a due PENDING job into the broker.
RELEASABLE = frozenset({S.PENDING})
# A worker may start an attempt of a released job, or of one waiting for its retry.
CLAIMABLE = frozenset({S.QUEUED, S.RETRYING})
# A client may move run_at of a job that has not been released yet (PATCH /jobs/{id}/).
RESCHEDULABLE = frozenset({S.PENDING})
# A client may cancel anything that has not finished.
CANCELLABLE = frozenset({S.PENDING, S.QUEUED, S.RETRYING, S.RUNNING})
# Only an explicit manual retry (the dead-letter app) moves a job out of these.
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED})
ACTIVE = frozenset(set(S) - TERMINAL)
