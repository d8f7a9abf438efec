"""Bulk retry and dismissal: batches of set-based statements, counts, and what is skipped."""

from __future__ import annotations

import pytest
from django.utils import timezone

from deadletter.models import DeadLetter, DeadLetterAction
from deadletter.services import dead_letter_dismiss_bulk, dead_letter_retry_bulk
from jobs.models import Job
from tests.deadletter.factories import DeadLetterFactory, FailedJobFactory

pytestmark = pytest.mark.django_db


def test_bulk_retry_retries_every_retryable_entry_and_counts_the_rest(admin):
    open_ = DeadLetterFactory.create_batch(7)
    dismissed = DeadLetterFactory(state="dismissed", resolved_at=timezone.now())
    retried = DeadLetterFactory(state="retried", resolved_at=timezone.now())
    stale = DeadLetterFactory(job=FailedJobFactory(status=Job.Status.SUCCEEDED))
    outcome = dead_letter_retry_bulk(
        selection=DeadLetter.objects.all(), actor=admin, note="bulk", batch_size=3
    )
    assert (outcome.selected, outcome.done, outcome.skipped) == (10, 8, 2)
    done = [*open_, dismissed]
    assert set(Job.objects.filter(status=Job.Status.PENDING).values_list("id", flat=True)) == {
        d.job_id for d in done
    }
    assert set(DeadLetter.objects.filter(state="retried").values_list("id", flat=True)) == {
        *(d.id for d in done),
        retried.id,
    }
    stale.refresh_from_db()
    assert stale.state == "open"
    actions = DeadLetterAction.objects.all()
    assert {a.dead_letter_id for a in actions} == {d.id for d in done}
    assert {(a.kind, a.note, a.actor_id, a.details["bulk"]) for a in actions} == {
        ("retry", "bulk", admin.id, True)
    }


def test_bulk_retry_costs_a_few_statements_per_batch_not_per_entry(
    admin, django_assert_max_num_queries
):
    DeadLetterFactory.create_batch(60)
    # Per batch of 25: savepoint, lock, job UPDATE (+ NOTIFY, its savepoint), entry UPDATE,
    # audit INSERT, release: 3 batches (25, 25, 10) in well under 30 queries; none per entry.
    with django_assert_max_num_queries(30):
        outcome = dead_letter_retry_bulk(
            selection=DeadLetter.objects.all(), actor=admin, batch_size=25
        )
    assert outcome.done == 60


def test_bulk_dismiss_dismisses_open_entries_only(admin):
    open_ = DeadLetterFactory.create_batch(4)
    DeadLetterFactory(state="retried", resolved_at=timezone.now())
    outcome = dead_letter_dismiss_bulk(
        selection=DeadLetter.objects.all(), actor=admin, note="noise", batch_size=2
    )
    assert (outcome.selected, outcome.done, outcome.skipped) == (5, 4, 1)
    assert set(DeadLetter.objects.filter(state="dismissed").values_list("id", flat=True)) == {
        d.id for d in open_
    }
    assert Job.objects.filter(status=Job.Status.FAILED).count() == 5  # jobs left as they were
    assert DeadLetterAction.objects.filter(kind="dismiss", note="noise").count() == 4


def test_a_filtered_selection_is_walked_once_even_as_entries_leave_it(admin):
    """Retried entries leave a state=open selection while skipped ones stay: keyset paging."""
    DeadLetterFactory.create_batch(5)
    for _ in range(5):
        DeadLetterFactory(job=factory_job_not_failed())
    outcome = dead_letter_retry_bulk(
        selection=DeadLetter.objects.filter(state="open"), actor=admin, batch_size=2
    )
    assert (outcome.selected, outcome.done) == (10, 5)


def factory_job_not_failed():  # a fresh SUCCEEDED job for each entry
    return FailedJobFactory(status=Job.Status.SUCCEEDED)
