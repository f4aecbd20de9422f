"""The cohort policy: a person outside a task's cohort on the date asked is refused, with the reason
in both languages, or (in a batch that asks for it) scored with a warning."""

from __future__ import annotations

from typing import Any

from features.tasks import Task

NOT_IN_COHORT = "not_in_cohort"


def not_in_cohort(task: Task, as_of: Any) -> dict[str, Any]:
    """The machine-readable refusal for a person outside the cohort, with the reason in
    both languages."""
    return {
        "reason": NOT_IN_COHORT,
        "task": task.name,
        "as_of": str(as_of),
        "message_en": task.not_in_cohort("en"),
        "message_zh": task.not_in_cohort("zh"),
    }


def out_of_cohort_warning(task: Task, as_of: Any) -> str:
    return f"not in the {task.name} cohort on {as_of} ({task.not_in_cohort('en')}); scored anyway"
