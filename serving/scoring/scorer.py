"""The one scoring path the API and the batch scorer share: model output in readable form,
the support each task may suggest, and the cohort policy.

Cohort policy: a person outside the task's cohort on as_of is not scored by default (the model
knows nothing about such people: a young person with no drug record has no relapse risk to
speak of). The API answers 409 and a roster row gets the status `not_in_cohort`, both saying
why in the person's terms. An analyst may ask for the score anyway; the answer then says
`in_cohort: false` and carries a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.core.errors import ConfigError
from features.tasks import SupportOption, Task, get_task, task_names
from models.deployable import RiskModel, Scored
from serving.scoring.reasons import factors
from training.explain import TopK

DEFAULT_TOP = 5
NOT_IN_COHORT = "not_in_cohort"

Interventions = dict[str, tuple[SupportOption, ...]]


def load_interventions(path: Path | None = None) -> Interventions:
    """Each task's support options: the task's own declaration, or a YAML file that maps a
    task name to its list of `{match: [...], en: ..., zh: ...}` (tasks it leaves out keep
    their declared options)."""
    options = {name: get_task(name).support for name in task_names()}
    if path is None:
        return options
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        for task, entries in raw.items():
            get_task(task)
            options[task] = tuple(
                SupportOption(tuple(e["match"]), e["en"], e["zh"]) for e in entries
            )
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read interventions ({exc.strerror})") from None
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: not a valid interventions file: a task name, then a list of "
            f"{{match, en, zh}} ({exc})"
        ) from None
    return options


def suggest(raising: tuple[str, ...], options: tuple[SupportOption, ...]) -> list[dict[str, str]]:
    """Support options for the features that raise a person's risk, most important first."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for feature in raising:
        for iv in options:
            if feature.startswith(iv.match) and iv.en not in seen:
                seen.add(iv.en)
                out.append({"en": iv.en, "zh": iv.zh, "because": feature})
    return out


class Support:
    """Suggested support for a batch: rows share few distinct sets of raising features, so
    each set's options are looked up once (`options`) and rows point at theirs (`index`)."""

    def __init__(self, top: TopK, options: tuple[SupportOption, ...]) -> None:
        # each row's raising features as positions + 1, 0 where a reason does not raise risk
        raising = np.where(top.contribution > 0, top.position + 1, 0)
        if len(raising) == 1:  # the API's one row: grouping it cost more than its reasons
            keys, index = raising, np.zeros(1, np.int64)
        else:
            keys, index = np.unique(raising, axis=0, return_inverse=True)
        self.options = [
            suggest(tuple(top.names[d - 1] for d in key if d), options) for key in keys.tolist()
        ]
        self.index = index.reshape(-1)

    def per_row(self) -> list[list[dict[str, str]]]:
        return [self.options[i] for i in self.index.tolist()]

    def joined(self, lang: str) -> np.ndarray:
        """Each row's options in one language, as one "; "-separated string."""
        texts = np.array(["; ".join(o[lang] for o in opts) for opts in self.options], object)
        return texts[self.index]


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


def score_frame(
    model: RiskModel,
    frame: pd.DataFrame,
    options: tuple[SupportOption, ...],
    explain: int = DEFAULT_TOP,
) -> list[dict[str, Any]]:
    """One result per row: probability, tier, percentile and, with explain > 0, the reasons
    and the support options they call for."""
    return score_encoded(model, model.prepare(frame), options, explain)


def score_encoded(
    model: RiskModel,
    X: np.ndarray,
    options: tuple[SupportOption, ...],
    explain: int = DEFAULT_TOP,
) -> list[dict[str, Any]]:
    """`score_frame` of rows already in the model's encoding (the service's feature matrix)."""
    scored: Scored = model.score_encoded(X, explain=explain)
    top = scored.top
    reasons = factors(top) if top is not None else None
    support = Support(top, options).per_row() if top is not None else None
    results = []
    for i in range(len(X)):
        r: dict[str, Any] = {
            "probability": float(scored.probability[i]),
            "tier": scored.tier[i],
            "percentile": None if np.isnan(scored.percentile[i]) else float(scored.percentile[i]),
            "raw_score": float(scored.raw_score[i]),
        }
        if reasons is not None and support is not None and scored.base_value is not None:
            r["base_value"] = float(scored.base_value[i])
            r["factors"] = reasons[i]
            r["support"] = support[i]
        results.append(r)
    return results
