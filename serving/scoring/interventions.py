"""Support options: each task's declared options or a site's YAML file, and the rule that suggests
them from the factors raising a person's risk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from features.core.errors import ConfigError
from features.tasks import SupportOption, get_task, task_names
from training.explain import TopK

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
            if iv.answers(feature) and iv.en not in seen:
                seen.add(iv.en)
                out.append({"en": iv.en, "zh": iv.zh, "because": feature})
    return out


class SuggestedSupport:
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
