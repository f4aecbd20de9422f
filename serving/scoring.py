"""The one scoring path the API and the batch scorer share: model output in readable form."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.errors import ConfigError
from models.deployable import RiskModel, Scored
from training.explain import Factor, TopK

DEFAULT_TOP = 5


@dataclass(frozen=True)
class Intervention:
    match: tuple[str, ...]
    en: str
    zh: str


def load_interventions(path: Path | None = None) -> list[Intervention]:
    text = (
        Path(path).read_text(encoding="utf-8")
        if path
        else resources.files("serving").joinpath("interventions.yaml").read_text(encoding="utf-8")
    )
    try:
        entries = yaml.safe_load(text) or []
        return [Intervention(tuple(e["match"]), e["en"], e["zh"]) for e in entries]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path or 'interventions.yaml'}: not a valid interventions file ({exc})"
        ) from None


def suggest(raising: tuple[str, ...], interventions: list[Intervention]) -> list[dict[str, str]]:
    """Support options for the features that raise a person's risk, most important first."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for feature in raising:
        for iv in interventions:
            if feature.startswith(iv.match) and iv.en not in seen:
                seen.add(iv.en)
                out.append({"en": iv.en, "zh": iv.zh, "because": feature})
    return out


@dataclass(frozen=True)
class Support:
    """Suggested support for a batch: rows share few distinct sets of raising features, so
    each set's options are looked up once (`options`) and rows point at theirs (`index`)."""

    options: list[list[dict[str, str]]]
    index: np.ndarray

    def per_row(self) -> list[list[dict[str, str]]]:
        return [self.options[i] for i in self.index.tolist()]

    def joined(self, lang: str) -> np.ndarray:
        """Each row's options in one language, as one "; "-separated string."""
        texts = np.array(["; ".join(o[lang] for o in opts) for opts in self.options], object)
        return texts[self.index]


def support_for(top: TopK, interventions: list[Intervention]) -> Support:
    """`suggest` for every row of a batch."""
    # each row's raising features as positions + 1, 0 where a reason does not raise the risk
    raising = np.where(top.contribution > 0, top.position + 1, 0)
    keys, index = np.unique(raising, axis=0, return_inverse=True)
    options = [
        suggest(tuple(top.names[d - 1] for d in key if d), interventions) for key in keys.tolist()
    ]
    return Support(options, index.reshape(-1))


def factor_dict(f: Factor) -> dict[str, Any]:
    return {
        "feature": f.feature,
        "label_en": f.label_en,
        "label_zh": f.label_zh,
        "value": f.value,
        "contribution": f.contribution,
        "direction": f.direction,
    }


def score_batch(
    model: RiskModel, frame: pd.DataFrame, interventions: list[Intervention], explain: int
) -> tuple[Scored, list[list[dict[str, str]]] | None]:
    """The shared core: model scores (columnar) and, with explanations, support per row."""
    scored = model.score(frame, explain=explain)
    if scored.top is None:
        return scored, None
    return scored, support_for(scored.top, interventions).per_row()


def score_frame(
    model: RiskModel,
    frame: pd.DataFrame,
    interventions: list[Intervention],
    explain: int = DEFAULT_TOP,
) -> list[dict[str, Any]]:
    """One result per row: probability, tier, percentile and, with explain > 0, the reasons."""
    scored, support = score_batch(model, frame, interventions, explain)
    results = []
    for i in range(len(frame)):
        r: dict[str, Any] = {
            "probability": float(scored.probability[i]),
            "tier": scored.tier[i],
            "percentile": None if np.isnan(scored.percentile[i]) else float(scored.percentile[i]),
            "raw_score": float(scored.raw_score[i]),
        }
        if support is not None:
            r["base_value"] = float(scored.base_value[i])
            r["factors"] = [factor_dict(f) for f in scored.factors[i]]
            r["support"] = support[i]
        results.append(r)
    return results
