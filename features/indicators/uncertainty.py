"""How sure each indicator figure is: its exact interval, where it lies in the funnel around
the city's value, and how far its rank could move by chance.

A district of a few hundred people moves by chance from month to month, and a ranking on
point values punishes that chance. The public-health standard for comparing units of
different sizes (Spiegelhalter, "Funnel plots for comparing institutional performance",
Statistics in Medicine 2005) shows each unit against the range its size allows around the
overall value; these are its parts, for the two kinds of indicator the programme has:

- a proportion (numerator persons of denominator persons): the exact (Clopper-Pearson)
  interval, and the binomial funnel limits;
- a rate per `per` residents of a count of events (the youth new-user rate): the exact
  (Garwood) Poisson interval, and the Poisson funnel limits.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.stats import mstats

BINOMIAL, POISSON = "binomial", "poisson"
LEVELS = (0.95, 0.998)  # Spiegelhalter's two funnel limits: an alert and an alarm
# the share of the z-scores winsorized at each end before estimating overdispersion (the paper's
# 10%): one extreme district does not make the limits of all the others wide
WINSOR = 0.1
DRAWS = 1000  # simulated figures per district behind each rank interval


def interval(k: np.ndarray, n: np.ndarray, family: str, per: int, level: float = 0.95) -> tuple:
    """The exact interval of each value `k / n * per`, in the value's units; NaN where n is 0.

    Clopper-Pearson's for a proportion (the beta quantiles of the binomial's exact tails: it
    never falls below its level, at 0 of n and at small n too, where the textbook interval
    collapses to a point), and Garwood's for a Poisson count (the same for the Poisson)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    ok = (n > 0) & np.isfinite(k)
    safe_n, safe_k = np.where(ok, n, 1.0), np.where(ok, k, 0.0)
    a = 1 - level
    with np.errstate(all="ignore"):
        if family == BINOMIAL:
            lo = np.where(safe_k > 0, stats.beta.ppf(a / 2, safe_k, safe_n - safe_k + 1), 0.0)
            hi = np.where(
                safe_k < safe_n, stats.beta.ppf(1 - a / 2, safe_k + 1, safe_n - safe_k), 1.0
            )
        else:
            lo = np.where(safe_k > 0, stats.chi2.ppf(a / 2, 2 * safe_k) / 2, 0.0) / safe_n
            hi = stats.chi2.ppf(1 - a / 2, 2 * safe_k + 2) / 2 / safe_n
    return np.where(ok, lo * per, np.nan), np.where(ok, hi * per, np.nan)


def _exact_limit(q: float, n: np.ndarray, target: float, family: str) -> np.ndarray:
    """The count a unit of size n stays above with probability q under the target, as a share
    of n, interpolated between whole counts as the paper's appendix does so that the limits are
    smooth in n: r = the q-quantile, limit = (r - (F(r) - q) / P(r)) / n."""
    dist = stats.binom(n, target) if family == BINOMIAL else stats.poisson(target * n)
    r = dist.ppf(q)
    step = dist.pmf(r)
    shift = np.where(step > 0, (dist.cdf(r) - q) / np.where(step > 0, step, 1.0), 0.0)
    return np.clip((r - shift) / n, 0.0, 1.0 if family == BINOMIAL else np.inf)


def variance(target: float, n: np.ndarray, family: str) -> np.ndarray:
    """The variance of a unit's value (as a share, or events per person) under the target."""
    return (target * (1 - target) if family == BINOMIAL else target) / n


def excess_variance(share: np.ndarray, n: np.ndarray, target: float, family: str) -> float:
    """Spiegelhalter's additive random-effects variance τ² between units beyond chance, 0
    when the units vary no more than chance says (the winsorized z-scores' χ² test at 5%).

    φ is the mean squared winsorized z-score; with I units, when Iφ exceeds the χ²(I-1)
    95% point, τ² = (Iφ - (I-1)) / (Σw - Σw²/Σw) with w = 1/s² (the paper's section 6)."""
    s2 = variance(target, np.where(n > 0, n, 1.0), family)
    ok = (n > 0) & np.isfinite(share) & (s2 > 0)
    units = int(ok.sum())
    if units < 3:
        return 0.0
    z = (share[ok] - target) / np.sqrt(s2[ok])
    phi = float(np.mean(np.asarray(mstats.winsorize(z, limits=(WINSOR, WINSOR))) ** 2))
    if units * phi <= stats.chi2.ppf(0.95, units - 1):
        return 0.0
    w = 1 / s2[ok]
    return max(0.0, (units * phi - (units - 1)) / (w.sum() - (w**2).sum() / w.sum()))


def limits(
    n: np.ndarray, target: float, family: str, per: int, tau2: float = 0.0
) -> dict[str, np.ndarray]:
    """The funnel's limits for units of size `n` at both levels, in the value's units:
    `lo95`, `hi95`, `lo998`, `hi998`, NaN where n is 0 or there is no target.

    Without overdispersion (τ² = 0) the limits are exact (binomial or Poisson under the
    target, with the appendix's interpolation); with it, normal limits widened by τ²."""
    n = np.asarray(n, float)
    has = (n > 0) & np.isfinite(target)
    safe = np.where(n > 0, n, 1.0)
    out: dict[str, np.ndarray] = {}
    for level in LEVELS:
        tag = str(level)[2:]
        if not np.isfinite(target):
            lo = hi = np.full(n.shape, np.nan)
        elif tau2 > 0:
            half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(variance(target, safe, family) + tau2)
            lo, hi = np.clip(target - half, 0, None), target + half
            hi = np.minimum(hi, 1.0) if family == BINOMIAL else hi
        else:
            lo = _exact_limit((1 - level) / 2, safe, target, family)
            hi = _exact_limit((1 + level) / 2, safe, target, family)
        out[f"lo{tag}"] = np.where(has, lo * per, np.nan)
        out[f"hi{tag}"] = np.where(has, hi * per, np.nan)
    return out


def funnel(
    k: np.ndarray, n: np.ndarray, target: float, family: str, per: int
) -> tuple[dict[str, np.ndarray], float]:
    """Each unit's funnel limits (see `limits`) and where it lies at 99.8% (`versus`:
    "above", "below", "within", or "" where there is no figure), and the τ² they were drawn
    with: with overdispersion, a whole table of districts that all differ from the city is not
    called out unit by unit."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    has = n > 0
    share = np.where(has, k / np.where(has, n, 1.0), np.nan)
    tau2 = excess_variance(share, n, target, family) if np.isfinite(target) else 0.0
    out = limits(n, target, family, per, tau2)
    value = share * per
    missing = ~has | ~np.isfinite(value) | ~np.isfinite(target)
    out["versus"] = np.select(
        [missing, value > out["hi998"], value < out["lo998"]], ["", "above", "below"], "within"
    )
    return out, tau2


def draws(
    k: np.ndarray, n: np.ndarray, family: str, per: int, rng: np.random.Generator
) -> np.ndarray:
    """`DRAWS` values each unit could have had, drawn from its figure's Jeffreys posterior
    (Beta(k + ½, n - k + ½), or Gamma(k + ½) / n): a parametric bootstrap that, unlike
    resampling k / n itself, does not collapse to a point at 0 of n. NaN where n is 0."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    has = n > 0
    safe_n, safe_k = np.where(has, n, 1.0), np.where(has, k, 0.0)
    size = (DRAWS, len(k))
    if family == BINOMIAL:
        values = rng.beta(safe_k + 0.5, safe_n - safe_k + 0.5, size=size) * per
    else:
        values = rng.gamma(safe_k + 0.5, size=size) / safe_n * per
    return np.where(has, values, np.nan)


def ranks(values: np.ndarray, direction: int) -> np.ndarray:
    """Each row's ranks (1 = best, ties share the best), NaN for a unit without a figure."""
    key = np.where(np.isnan(values), np.inf, -direction * values)
    out = stats.rankdata(key, method="min", axis=-1).astype(float)
    return np.where(np.isnan(values), np.nan, out)


def spread(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central 95% of each column's samples (NaN for a column without any)."""
    with np.errstate(all="ignore"):
        filled = np.isfinite(samples).any(axis=0)
        lo = np.nanquantile(np.where(filled, samples, 0.0), 0.025, axis=0, method="inverted_cdf")
        hi = np.nanquantile(np.where(filled, samples, 0.0), 0.975, axis=0, method="inverted_cdf")
    return np.where(filled, lo, np.nan), np.where(filled, hi, np.nan)
