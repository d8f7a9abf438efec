from __future__ import annotations

import pytest

from deadletter.fingerprints import fingerprint, normalise_message


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ("fail step, attempt 3", "fail step, attempt <n>"),
        (
            "GET http://10.0.0.7:8080/orders/8812 answered 503",
            "GET http://<ip>/orders/<n> answered <n>",
        ),
        (
            "GET http://127.0.0.1:4242/status/404/3f9a0c1b2d4e4f5a8b7c6d5e4f3a2b1c answered 404",
            "GET http://<ip>/status/<n>/<id> answered <n>",
        ),
        ("job 6f1c2a7e-9b8d-4c3e-a1f2-0b9c8d7e6f5a failed", "job <uuid> failed"),
        ("user bob@example.com not found (id=123)", "user <email> not found (id=<n>)"),
        ("connect to [2001:db8::1]:443 refused", "connect to <ip> refused"),
        ("fe80::1 unreachable", "<ip> unreachable"),
        ("object at 0x7f3a2b1c", "object at <addr>"),
        ("token AbC123xyz987QWE456tok rejected", "token <id> rejected"),
        ("timed out after 2.5s", "timed out after <n>s"),
        # Not numbers of a failure but part of a name: kept, so v1 and v2 errors stay apart.
        ("api v2 refused step1", "api v2 refused step1"),
        ("  many \n  spaces  ", "many spaces"),
    ],
)
def test_numbers_ids_and_addresses_are_masked(message, pattern):
    assert normalise_message(message) == pattern


def test_the_same_failure_with_other_numbers_has_one_fingerprint():
    def fp(message: str, step_type: str = "http", error_type: str = "TransientStepError") -> str:
        pattern = normalise_message(message)
        return fingerprint(step_type=step_type, error_type=error_type, pattern=pattern)

    a = fp("GET http://10.0.0.7:8080/orders/1 answered 503")
    assert a == fp("GET http://10.0.0.9:8080/orders/77 answered 502")
    assert len(a) == 32
    assert a != fp("GET http://10.0.0.7:8080/orders/1 answered 503", step_type="tick")
    assert a != fp("GET http://10.0.0.7:8080/orders/1 answered 503", error_type="Permanent")
    assert a != fp("POST http://10.0.0.7:8080/orders/1 answered 503")
