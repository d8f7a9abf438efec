from __future__ import annotations

import factory
from django.utils import timezone

from deadletter.fingerprints import fingerprint, normalise_message
from deadletter.models import DeadLetter
from jobs.models import Job
from tests.jobs.factories import JobFactory


class FailedJobFactory(JobFactory):
    """A job that ran one attempt and ended FAILED at its first step."""

    status = Job.Status.FAILED
    attempts = 1
    finished_at = factory.LazyFunction(timezone.now)


def _error(message: str, *, step_type: str = "log", error_type: str = "TransientStepError"):
    return {
        "type": error_type,
        "code": "STEP.FAIL_TRANSIENT",
        "message": message,
        "traceback": f"Traceback (most recent call last):\n  ...\n{error_type}: {message}\n",
        "permanent": False,
        "step_index": 0,
        "step_type": step_type,
    }


class DeadLetterFactory(factory.django.DjangoModelFactory):
    """An open dead letter of a FAILED job, as dead_letter_record writes it."""

    class Meta:
        model = DeadLetter

    class Params:
        message = factory.Sequence(lambda n: f"boom {n}")

    job = factory.SubFactory(FailedJobFactory)
    reason = DeadLetter.Reason.EXHAUSTED
    error = factory.LazyAttribute(lambda o: _error(o.message))
    error_type = factory.LazyAttribute(lambda o: o.error["type"])
    error_code = factory.LazyAttribute(lambda o: o.error["code"])
    error_message = factory.LazyAttribute(lambda o: o.error["message"])
    step_type = factory.LazyAttribute(lambda o: o.error["step_type"])
    step_index = 0
    message_pattern = factory.LazyAttribute(lambda o: normalise_message(o.error_message))
    fingerprint = factory.LazyAttribute(
        lambda o: fingerprint(
            step_type=o.step_type, error_type=o.error_type, pattern=o.message_pattern
        )
    )
    attempts = factory.LazyAttribute(lambda o: o.job.attempts)
    worker = "worker@test"
    steps = factory.LazyAttribute(lambda o: o.job.steps)
    input = factory.LazyAttribute(lambda o: o.job.input)
    # Every field dead_letter_record snapshots (the OpenAPI document requires them all).
    retry_policy = factory.LazyAttribute(
        lambda o: {
            key: getattr(o.job, key)
            for key in (
                "max_retries",
                "retry_backoff",
                "retry_backoff_max",
                "retry_jitter",
                "timeout",
            )
        }
    )
