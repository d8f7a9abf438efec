"""A Python client and command-line interface for the jobplatform REST API.

```python
from jobplatform_client import Client

with Client() as jp:  # JOBPLATFORM_URL, JOBPLATFORM_TOKEN or JOBPLATFORM_API_KEY
    job = jp.jobs.submit(name="hello", steps=[{"type": "log", "params": {"message": "hi"}}])
    print(jp.jobs.wait(job.id).status)
```
"""

from __future__ import annotations

__version__ = "0.1.0"

from jobplatform_client.client import Client, DeadLetters, Jobs, Schedules
from jobplatform_client.errors import (
    ApiError,
    JobplatformError,
    TransportError,
    WaitTimeout,
)
from jobplatform_client.models import (
    TERMINAL,
    BulkOutcome,
    BulkSubmission,
    CallbackDelivery,
    DeadLetter,
    DeadLetterGroup,
    DeadLetterJob,
    Execution,
    FireTime,
    Health,
    Job,
    Page,
    Schedule,
    ScheduleTrigger,
    StepError,
    StepResult,
    StepType,
)
from jobplatform_client.retry import RetryPolicy
from jobplatform_client.signing import verify_callback

__all__ = [
    "TERMINAL",
    "ApiError",
    "BulkOutcome",
    "BulkSubmission",
    "CallbackDelivery",
    "Client",
    "DeadLetter",
    "DeadLetterGroup",
    "DeadLetterJob",
    "DeadLetters",
    "Execution",
    "FireTime",
    "Health",
    "Job",
    "JobplatformError",
    "Jobs",
    "Page",
    "RetryPolicy",
    "Schedule",
    "ScheduleTrigger",
    "Schedules",
    "StepError",
    "StepResult",
    "StepType",
    "TransportError",
    "WaitTimeout",
    "__version__",
    "verify_callback",
]
