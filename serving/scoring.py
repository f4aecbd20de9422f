"""The one scoring path the API and the batch scorer share: model output in readable form."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.store import DataError
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
        raise DataError(
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


def support_for(top: TopK, interventions: list[Intervention]) -> list[list[dict[str, str]]]:
    """`suggest` for every row of a batch. Rows share few distinct sets of raising features,
    so each set is looked up once."""
    names = np.asarray(top.names, dtype=object)
    raising = np.where(top.contribution > 0, names[top.position], None).tolist()
    cache: dict[tuple[str, ...], list[dict[str, str]]] = {}
    out = []
    for row in raising:
        key = tuple(f for f in row if f is not None)
        if key not in cache:
            cache[key] = suggest(key, interventions)
        out.append(cache[key])
    return out


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
    return scored, support_for(scored.top, interventions)


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
