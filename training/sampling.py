"""Training on a sample of a spine too big for one machine's memory (`sunshine train --sample`).

The sample is stratified by label and every stratum is drawn at the same rate, so the label
rate of the sample is the cohort's: each row stands for the same number of cohort rows (its
weight), and probabilities calibrated on the sample are calibrated to the full cohort without
any correction. Drawing positives at a higher rate would need that correction everywhere a
rate is estimated (calibration, ECE, the fairness audit), which one uniform weight avoids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from features.core.errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    rows: int  # the cohort's rows (the spine)
    positives: int
    sampled_rows: int
    sampled_positives: int
    seed: int

    @property
    def weight(self) -> float:
        """How many of the cohort's rows each sampled row stands for."""
        return self.rows / max(self.sampled_rows, 1)

    def as_dict(self) -> dict[str, float | int]:
        """As recorded in the run's data fingerprint."""
        return {**asdict(self), "weight": self.weight}

    @classmethod
    def of(cls, recorded: dict) -> Sampling:
        return cls(**{k: v for k, v in recorded.items() if k != "weight"})

    def describe(self) -> str:
        """The model card's sentence."""
        return (
            f"trained on a label-stratified sample of {self.sampled_rows:,} of the cohort's "
            f"{self.rows:,} rows ({self.sampled_positives:,} of {self.positives:,} positives), "
            f"each stratum drawn at the same rate (seed {self.seed}): every row weighs "
            f"{self.weight:.2f} cohort rows, and the sample's label rate, so the calibration, "
            "is the full cohort's"
        )


def stratified_sample(spine: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, Sampling]:
    """`n` rows of the spine (all of it if it has no more), in the spine's order."""
    if n < 1:
        raise ConfigError(f"--sample {n}: give a number of rows, at least 1")
    y = spine["label"].to_numpy().astype(bool)
    total, positives = len(y), int(y.sum())
    if n >= total:
        return spine, Sampling(total, positives, total, positives, seed)
    take_pos = int(round(n * positives / total)) if total else 0
    if positives and not take_pos:
        raise ConfigError(
            f"--sample {n}: too few rows to hold a positive at the cohort's rate "
            f"({positives:,} of {total:,}); sample more"
        )
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(y), take_pos, replace=False),
            rng.choice(np.flatnonzero(~y), n - take_pos, replace=False),
        ]
    )
    chosen.sort()
    return spine.iloc[chosen].reset_index(drop=True), Sampling(total, positives, n, take_pos, seed)
