"""Step parameters marked secret, hidden wherever a job is shown (docs/security.md#redaction).

A step type marks a parameter secret in its JSON Schema with ``"writeOnly": true`` (JSON Schema's
own word for "sent, never returned"): on a property, on ``additionalProperties`` (every other key
of an object: the http step's ``headers`` values) or on ``items``. The job row keeps the real
value, since the worker needs it; the API's job and schedule responses, the admin and the
dead-letter snapshot show :data:`REDACTED` instead.
"""

from __future__ import annotations

from typing import Any

from jobs.steps import get_step
from jobs.steps.http import redact_url

REDACTED = "[redacted]"


def redact_value(schema: Any, value: Any) -> Any:
    """``value`` with every part its ``schema`` marks ``writeOnly`` replaced by REDACTED."""
    if not isinstance(schema, dict):
        return value
    if schema.get("writeOnly") is True:
        return REDACTED
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {key: redact_value(properties.get(key, extra), item) for key, item in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [redact_value(schema["items"], item) for item in value]
    return value


def redact_steps(steps: Any) -> Any:
    """A pipeline (``[{type, params, ...}]``) with the secret params of each step redacted."""
    if not isinstance(steps, list):
        return steps
    redacted = []
    for spec in steps:
        kind = spec.get("type") if isinstance(spec, dict) else None
        step_type = get_step(kind) if isinstance(kind, str) else None
        if step_type is None or not isinstance(spec.get("params"), dict):
            redacted.append(spec)
            continue
        redacted.append(spec | {"params": redact_value(step_type.schema, spec["params"])})
    return redacted


def redact_template(template: Any) -> Any:
    """A schedule's job template (a submission without run_at) with its steps redacted, and its
    callback_url shown as a job's is (no userinfo, no secret-looking query values)."""
    if not isinstance(template, dict):
        return template
    redacted = dict(template)
    if "steps" in template:
        redacted["steps"] = redact_steps(template["steps"])
    if template.get("callback_url"):
        redacted["callback_url"] = redact_url(template["callback_url"])
    return redacted
