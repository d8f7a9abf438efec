"""A misspelt CELERY_* setting is silently ignored by Celery: assert what the app loaded."""

from __future__ import annotations

from django.conf import settings

from executions.tasks import AttemptFailed, run_job
from jobplatform.celery import app


def test_workers_acknowledge_late_and_hand_back_lost_work():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert run_job.acks_late is True and run_job.reject_on_worker_lost is True


def test_a_failed_attempt_is_acknowledged_like_a_success():
    # run_job raises AttemptFailed so that Flower shows FAILURE: its message must still be acked,
    # never handed back. Expected, so Celery logs it without a traceback.
    assert app.conf.task_acks_on_failure_or_timeout is True
    assert run_job.acks_on_failure_or_timeout is True
    assert run_job.throws == (AttemptFailed,)


def test_celery_leaves_logging_to_the_settings():
    from celery.signals import setup_logging

    # With a receiver, Celery configures no handler of its own: every line is ours (JSON).
    assert setup_logging.receivers


def test_only_json_crosses_the_broker():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_visibility_timeout_outlasts_the_longest_job_and_backoff():
    longest = settings.JOBPLATFORM_MAX_JOB_TIMEOUT + settings.JOBPLATFORM_MAX_RETRY_BACKOFF
    assert app.conf.broker_transport_options["visibility_timeout"] > longest


def test_beat_uses_the_database_scheduler_and_workers_reuse_connections():
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    # Read by Celery's Django fixup under exactly this name.
    assert app.conf.get("CELERY_DB_REUSE_MAX") >= 100


def test_workers_serve_message_priority_and_rotate_between_queues():
    """Kombu's queue_order_strategy orders the *queues* of a worker's BRPOP, not messages: with
    "priority" or "sorted" a busy first queue starves the others. Message priority comes from
    priority_steps, ten Redis lists per queue named highest first in every BRPOP
    (tests/jobs/test_flow_control.py runs both with a real worker)."""
    options = app.conf.broker_transport_options
    assert options["queue_order_strategy"] == "round_robin"
    assert options["priority_steps"] == list(range(10))


def test_the_delivery_tasks_go_to_the_webhook_queue_and_jobs_to_their_own(settings):
    from deadletter.services import NOTIFY_TASK
    from jobs.callbacks.services import DELIVER_TASK

    def queue(task: str, **options: str) -> str:
        return app.amqp.router.route(options, task)["queue"].name

    assert queue(DELIVER_TASK) == queue(NOTIFY_TASK) == "webhooks"  # JOBPLATFORM_WEBHOOK_QUEUE
    assert queue("executions.run_job", queue="reports") == "reports"  # the dispatcher names it
    assert queue("deadletter.purge") == settings.JOBPLATFORM_QUEUES[0]  # the default queue
    settings.JOBPLATFORM_WEBHOOK_QUEUE = "hooks"  # read at each publish
    assert queue(DELIVER_TASK) == "hooks"
