"""Completion callbacks: a signed POST to the job's ``callback_url`` and to the operator's
completion webhook once a job ends (docs/api.md#completion-callbacks)."""
