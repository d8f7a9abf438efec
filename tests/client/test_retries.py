"""Retries on 429 and 503, through a real local server in front of the live API that answers as
scripted: which requests are sent again, after how long, and that a submission sent again makes
one job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from jobplatform_client import ApiError, Client, RetryPolicy, TransportError
from jobplatform_client.retry import parse_retry_after

from jobs.models import Job as JobRow
from tests.support import free_port

LOG = {"type": "log", "params": {"message": "retried"}}
LATER = "2099-01-01T00:00:00Z"  # the jobs here need not run


@pytest.mark.django_db(transaction=True)
def test_a_429_is_retried_after_its_retry_after_with_the_same_idempotency_key(proxy, token):
    proxy.script = [(429, 1)]
    with Client(proxy.url, token=token) as jp:
        job = jp.jobs.submit(name="throttled", steps=[LOG], run_at=LATER)
    first, second = proxy.seen
    assert second.at - first.at >= 1.0  # Retry-After: 1 was honoured
    key = first.headers["Idempotency-Key"]
    assert key and second.headers["Idempotency-Key"] == key
    assert proxy.forwarded == [201]
    assert [str(i) for i in JobRow.objects.values_list("id", flat=True)] == [job.id]


@pytest.mark.django_db(transaction=True)
def test_a_submission_whose_answer_was_lost_makes_one_job(proxy, token):
    # The API stores the job, but its answer is replaced by a 503: the client sends the
    # submission again with the same key, and the API answers with the job it has.
    proxy.script = [("lose", 503)]
    with Client(proxy.url, token=token) as jp:
        job = jp.jobs.submit(name="lost-answer", steps=[LOG], run_at=LATER)
    assert proxy.forwarded == [201, 200]  # created, then the same job again
    assert len({s.headers["Idempotency-Key"] for s in proxy.seen}) == 1
    assert [str(i) for i in JobRow.objects.values_list("id", flat=True)] == [job.id]


@pytest.mark.django_db(transaction=True)
def test_a_bulk_submission_is_sent_again_after_a_429_and_a_503_with_its_key(proxy, token):
    jobs = [{"name": "bulk", "steps": [LOG], "run_at": LATER}]
    with Client(proxy.url, token=token, retry=RetryPolicy(backoff=0.01)) as jp:
        proxy.script = [(429, 0)]
        assert jp.jobs.submit_many(jobs).count == 1
        assert len(proxy.seen) == 2

        # The batch was stored but its answer lost: sent again with the same key, the API
        # answers the jobs it stored instead of storing them twice.
        proxy.script = [("lose", 503)]
        batch = jp.jobs.submit_many(jobs)
    assert len(proxy.seen) == 4
    assert proxy.seen[2].headers["Idempotency-Key"] == proxy.seen[3].headers["Idempotency-Key"]
    assert proxy.forwarded[-2:] == [201, 200]
    assert JobRow.objects.count() == 2
    assert JobRow.objects.filter(id=batch.ids[0]).exists()


@pytest.mark.django_db(transaction=True)
def test_reads_are_retried_on_503_with_backoff_and_give_up_after_the_policy_attempts(proxy, token):
    policy = RetryPolicy(attempts=3, backoff=0.01)
    with Client(proxy.url, token=token, retry=policy) as jp:
        proxy.script = [(503, None), (503, None)]
        assert jp.jobs.list().results == ()
        assert len(proxy.seen) == 3

        proxy.script = [(429, 0)] * 3
        with pytest.raises(ApiError) as error:
            jp.jobs.list()
    assert (error.value.status, error.value.code, error.value.retry_after) == (
        429,
        "API.THROTTLED",
        0,
    )
    assert len(proxy.seen) == 6  # three more tries, then the error


@pytest.mark.django_db(transaction=True)
def test_a_retry_after_beyond_the_policy_is_raised_at_once(proxy, token):
    proxy.script = [(429, 3600)]
    with Client(proxy.url, token=token) as jp, pytest.raises(ApiError) as error:
        jp.jobs.list()
    assert (error.value.status, error.value.retry_after) == (429, 3600)
    assert len(proxy.seen) == 1


@pytest.mark.django_db(transaction=True)
def test_the_auth_scheme_follows_the_credential(proxy):
    with Client(proxy.url, api_key="k-123") as jp, pytest.raises(ApiError) as error:
        jp.jobs.list()
    assert proxy.seen[-1].headers["Authorization"] == "Api-Key k-123"
    # Not a key the API issued (today it takes no keys at all): refused, not a crash.
    assert error.value.status == 401 and error.value.code.startswith("AUTH.")
    with Client(proxy.url, token="t-1", auth_scheme="Bearer") as jp, pytest.raises(ApiError):
        jp.jobs.list()
    assert proxy.seen[-1].headers["Authorization"] == "Bearer t-1"


def test_an_api_that_cannot_be_reached_is_a_transport_error():
    url = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(attempts=2, backoff=0.01)
    with Client(url, token="t", retry=policy) as jp, pytest.raises(TransportError) as error:
        jp.jobs.submit_many([{"name": "x", "steps": [LOG]}])
    assert "ConnectError" in str(error.value)


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        (" 0 ", 0.0),
        ("-3", 0.0),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("1.5", None),  # not delta-seconds
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        (1, None, 0.25, 0.5),  # half to all of backoff * 2**(attempt-1)
        (2, None, 0.5, 1.0),
        (4, None, 2.0, 4.0),
        (3, 7.0, 7.0, 7.0),  # Retry-After exactly
        (2, 0.0, 0.0, 0.0),
    ],
)
def test_the_policy_waits_for_retry_after_or_backs_off(attempt, retry_after, low, high):
    delay = RetryPolicy(backoff=0.5).delay(attempt=attempt, retry_after=retry_after)
    assert delay is not None and low <= delay <= high


def test_the_policy_is_bounded():
    policy = RetryPolicy(attempts=3, backoff=10, backoff_max=12, max_retry_after=60)
    assert policy.delay(attempt=3, retry_after=None) is None  # the third try was the last
    assert policy.delay(attempt=1, retry_after=61) is None
    assert policy.delay(attempt=2, retry_after=None) <= 12
    assert timedelta(seconds=policy.delay(attempt=1, retry_after=60)) == timedelta(minutes=1)
