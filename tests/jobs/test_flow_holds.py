"""The release's circuit-breaker and rate-limit gates (jobs.flow), from tables: which jobs a
plan lets through, which it parks and with what name, and in which order the gates apply."""

from __future__ import annotations

from dataclasses import replace

from jobs.flow import BreakerGate, ConcurrencyKeyGate, RateLimitGate, plan_release
from tests.jobs.test_flow import B, job


def http(t: int, *hosts: str, owner: int = 1, limit: str | None = None, **fields):
    return replace(job(owner, t=t, **fields), hosts=hosts, rate_limit=limit)


def test_an_open_breaker_parks_its_hosts_jobs_without_taking_room():
    jobs = [http(0, "down.example"), http(1, "up.example"), http(2, "a.example", "down.example")]
    gate = BreakerGate({"down.example": False})
    plan = plan_release(candidates=jobs, rooms={"q": 2}, gates=[gate])
    assert [j.hosts for j in plan.release] == [("up.example",)]
    assert [j.due_at.second for j in plan.parked["circuit_breaker"]] == [0, 2]
    assert set(gate.held_by.values()) == {"down.example"}


def test_a_breaker_that_allows_a_probe_lets_exactly_one_job_through():
    jobs = [http(t, "down.example") for t in range(4)]
    gate = BreakerGate({"down.example": True})
    plan = plan_release(candidates=jobs, rooms={"q": 10}, gates=[gate])
    [probe] = plan.release
    assert probe.due_at.second == 0 and gate.probes == {"down.example": probe.id}
    assert len(plan.parked["circuit_breaker"]) == 3


def test_a_rate_limit_lets_through_as_many_jobs_as_tokens_and_names_what_held_the_rest():
    jobs = [http(t, limit="api") for t in range(5)] + [http(9, owner=B)]
    gate = RateLimitGate({"api": 2})
    plan = plan_release(candidates=jobs, rooms={"q": 10}, gates=[gate])
    assert [(j.rate_limit, j.due_at.second) for j in plan.release] == [
        ("api", 0),
        (None, 9),
        ("api", 1),
    ]
    assert [gate.held_by[j.id] for j in plan.parked["rate_limit"]] == ["api"] * 3
    assert gate.left == {"api": 0}


def test_a_job_needs_a_token_of_its_own_limit_and_of_each_hosts():
    jobs = [http(0, "h.example", limit="api"), http(1, "h.example"), http(2, limit="api")]
    gate = RateLimitGate({"api": 5, "h.example": 1})
    plan = plan_release(candidates=jobs, rooms={"q": 10}, gates=[gate])
    assert [j.due_at.second for j in plan.release] == [0, 2]
    [held] = plan.parked["rate_limit"]
    assert gate.held_by[held.id] == "h.example"
    assert gate.left == {"api": 3, "h.example": 0}


def test_tokens_are_left_for_the_jobs_room_did_not_reach():
    gate = RateLimitGate({"api": 5})
    plan = plan_release(
        candidates=[http(t, limit="api") for t in range(5)], rooms={"q": 2}, gates=[gate]
    )
    assert len(plan.release) == 2 and gate.left == {"api": 3}  # 3 handed back after the plan


def test_the_gates_apply_in_release_order_breaker_key_rate_limit():
    """A job the breaker holds takes neither a key's slot nor a token; one its key holds takes
    no token."""
    jobs = [
        http(0, "down.example", limit="api", key="k"),
        http(1, limit="api", key="k"),
        http(2, limit="api", key="k"),
    ]
    key = ConcurrencyKeyGate({})
    rate = RateLimitGate({"api": 5})
    plan = plan_release(
        candidates=jobs, rooms={"q": 10}, gates=[BreakerGate({"down.example": False}), key, rate]
    )
    assert [j.due_at.second for j in plan.release] == [1]
    assert [j.due_at.second for j in plan.parked["circuit_breaker"]] == [0]
    assert [j.due_at.second for j in plan.parked["concurrency_key"]] == [2]
    assert key.in_flight == {(1, "k"): 1} and rate.left == {"api": 4}
