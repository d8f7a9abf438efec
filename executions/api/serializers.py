from __future__ import annotations

from rest_framework import serializers

from executions.models import Execution, StepResult


class StepResultOutput(serializers.ModelSerializer):
    class Meta:
        model = StepResult
        fields = ["index", "type", "status", "output", "error", "started_at", "duration_ms"]


class ExecutionOutput(serializers.ModelSerializer):
    steps = StepResultOutput(source="step_results", many=True)

    class Meta:
        model = Execution
        fields = [
            "attempt",
            "status",
            "worker",
            "delivery_id",
            "started_at",
            "finished_at",
            "error",
            "will_retry",
            "retry_at",
            "steps",
        ]
