"""The model card: what the model is for, what it learned from, how well and how fairly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from features.spec import FEATURES_BY_NAME
from features.tasks import get_task
from training.drift import MAJOR_SHIFT
from training.fairness import RATIO_METRICS, flag_list
from training.holdout import SHIFTED_AMONG
from training.holdout import view as held_out_view
from training.sampling import Sampling

REVIEW_AFTER_DAYS = 180


def table_md(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TRANSPORT_AUROC = 0.65  # below this, a held-out group is not served well by the model
TRANSPORT_ECE = 0.10  # above this, its probabilities need local recalibration


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.2f} ({low:.2f}-{high:.2f})"


def fairness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The audit as the card shows it: each figure beside its interval."""
    out = table[["attribute", "group", "n", "prevalence"]].copy()
    out["auroc"] = [_interval(r.auroc, r.auroc_ci_low, r.auroc_ci_high) for r in table.itertuples()]
    out["O/E"] = [_interval(r.oe_ratio, r.oe_ci_low, r.oe_ci_high) for r in table.itertuples()]
    for metric in RATIO_METRICS:
        out[f"{metric} ratio"] = [
            _interval(
                getattr(r, f"{metric}_ratio"),
                getattr(r, f"{metric}_ratio_ci_low"),
                getattr(r, f"{metric}_ratio_ci_high"),
            )
            for r in table.itertuples()
        ]
    out["rates beyond 4/5"] = table["rates_beyond_four_fifths"]
    out["flags"] = table["flags"]
    return out


def evaluation_view(result: Any) -> pd.DataFrame:
    """The run's evaluation as people read it: a group split's in words and intervals, the
    rolling-origin periods and cross-validation folds as they are."""
    if result.config.split_mode == "group":
        return held_out_view(result.evaluation)
    return result.evaluation


def transport(result: Any) -> str:
    """For a group split: where the model does not carry over to a group it never saw."""
    if result.config.split_mode != "group":
        return ""
    table = result.evaluation.dropna(subset=["auroc"])
    poor = table[table["auroc"] < TRANSPORT_AUROC]
    off = table[table["ece"] > TRANSPORT_ECE]
    lines = [
        f"\nHeld out one {result.config.group_by} at a time, each by a model trained on the "
        "others. "
    ]
    if poor.empty and off.empty:
        lines.append(
            f"Every {result.config.group_by} with both outcomes ranks at AUROC "
            f"{TRANSPORT_AUROC} or better with ECE {TRANSPORT_ECE} or less."
        )
    if not poor.empty:
        lines.append(
            f"**Does not transport** (AUROC under {TRANSPORT_AUROC}): "
            + ", ".join(f"{r.group} ({r.auroc:.2f})" for r in poor.itertuples())
            + ". Do not use it there without local validation. "
        )
    if not off.empty:
        lines.append(
            f"**Miscalibrated** where held out (ECE over {TRANSPORT_ECE}): "
            + ", ".join(f"{r.group} ({r.ece:.2f})" for r in off.itertuples())
            + "; recalibrate on local outcomes (`sunshine recalibrate`) before reading its "
            "probabilities there. "
        )
    lines.append(moved_words(poor, off))
    return "".join(lines).rstrip() + "\n"


def moved_words(*tables: pd.DataFrame) -> str:
    """For the held-out groups in `tables` (rows of a leave-one-group-out evaluation: those
    that rank poorly, those miscalibrated; a group in both is said once), the inputs their
    scores lean on that moved there, as the evaluation found them (`shifted_inputs`), or that
    none did."""
    groups = pd.concat(tables).drop_duplicates("group")
    if groups.empty or "shifted_inputs" not in groups:
        return ""
    found = groups["shifted_inputs"].fillna("") != ""
    words = []
    if found.any():
        words.append(
            f"Inputs its scores there lean on that moved by a major shift (PSI {MAJOR_SHIFT} or "
            "more) from where it was trained, heaviest first: "
            + " ".join(f"{r.group}: {r.shifted_inputs}." for r in groups[found].itertuples())
        )
    if not found.all():
        words.append(
            f"In {', '.join(groups.loc[~found, 'group'])} none of the {SHIFTED_AMONG} inputs "
            "its scores lean on most moved by a major shift: what differs there is how often "
            "the outcome happens, or how it follows the inputs."
        )
    return " ".join(words)


def model_card(result: Any, fingerprint: dict[str, Any], trained_at: dt.datetime) -> str:
    review = (trained_at + dt.timedelta(days=REVIEW_AFTER_DAYS)).date()
    failed = [b["check"] for b in result.behaviour if not b["passed"]]
    shown_only = [b["check"] for b in result.behaviour if not b.get("decides", True)]
    top = result.importance.head(10)[["label_en", "label_zh", "mean_abs_contribution"]]
    task = get_task(result.task)
    allowed = result.config.allowed_features
    protected = ", ".join(result.config.protected_attributes)
    inputs = (
        "".join(
            f"\n- **{a}** is a model input, allowed because {why}" for a, why in allowed.items()
        )
        if allowed
        else ""
    )
    sampling = fingerprint.get("sampling")
    sampled = f"\n- {Sampling.of(sampling).describe()}." if sampling else ""
    sampled += untranslated(result.features)
    return f"""# Model card: sunshine-{result.task}

Trained {trained_at.isoformat(timespec="seconds")}. **Next review due {review}.**

## Intended use
Estimates {_outcome(task, fingerprint)}. It supports planning by trained staff, who
decide, with human review of every case, which support to offer first (social-worker visits,
methadone follow-up, skills training, family committee, school prevention programmes).

**Never** use it for enforcement, sanctions, detention, exclusion from services or any punitive
decision, and never as the only basis for a decision about a person.

## Data
- reference date {fingerprint.get("reference_date")}; events {fingerprint.get("events_from")} to
  {fingerprint.get("events_to")}; {fingerprint.get("persons"):,} persons,
  {fingerprint.get("events"):,} events; file hashes in `data_fingerprint.json`.
- protected attributes ({protected}) are used for the audit below and are not model features,
  except where stated here with the reason:{inputs or " none is."}
- persons outside the task's cohort are not scored: {task.not_in_cohort_en}.{sampled}

{table_md(result.split_table)}

{_performance(result)}
{_fairness(result)}
## Behavioural checks
{len(result.behaviour) - len(failed)} of {len(result.behaviour)} passed.
{"Failed: " + "; ".join(failed) if failed else ""}{_shown_only(shown_only)}

## Main factors (mean absolute contribution, log-odds)
{table_md(top)}

## Known limitations
- Scores rank people by recorded signals; people with few records (new arrivals, poor data
  entry) get scores from attributes alone and are less reliably ranked.
- Labels are recorded events (positive tests, arrests, registrations): use that goes
  undetected is not counted, and groups tested or policed more often can look riskier.
- Trained on one period; drift in the drug mix or in recording practice degrades it. Review by
  the date above, or sooner if the rolling-origin AUROC or calibration moves.
"""


def _outcome(task: Any, fingerprint: dict[str, Any]) -> str:
    """What the model estimates: the task's declared outcome, or the user's own label."""
    own = fingerprint.get("labels")
    if not own:
        return f"{task.description_en} ({task.description_zh})"
    return (
        f"the outcome of the label file {own['file']} ({own['rows']:,} rows, prevalence "
        f"{own['prevalence']:.1%}, as-of dates {own['as_of_first']} to {own['as_of_last']}); "
        f"the task's own label ({task.description_en}) was not used"
    )


def _shown_only(checks: list[str]) -> str:
    if not checks:
        return ""
    return (
        "\nRun and shown, not deciding (built on the task's own outcome, not this label): "
        + "; ".join(checks)
        + "."
    )


def untranslated(features: list[str]) -> str:
    """A line naming the codebook items with no Chinese label (their English one is shown on
    Chinese pages and rosters), or nothing."""
    items = sorted(
        {
            f.item
            for f in (FEATURES_BY_NAME[n] for n in features)
            # the Chinese label begins with the English one where it fell back to it
            if f.item and f.label_zh.startswith(f.label_en.rsplit(", ", 1)[0])
        }
    )
    if not items:
        return ""
    return (
        f"\n- {len(items)} codebook item(s) have no Chinese label; Chinese pages and rosters "
        f"show the English one: {', '.join(items)}."
    )


def _performance(result: Any) -> str:
    """The test-period figures, the baselines and the rolling or held-out evaluation."""
    m = result.metrics
    return f"""## Performance on the {result.config.test_title}
- AUROC {m["auroc"]:.3f} (95% CI {m["auroc_ci_low"]:.3f}-{m["auroc_ci_high"]:.3f}); without
  monotone constraints {m["auroc_unconstrained"]:.3f}
- AUPRC {m["auprc"]:.3f}, Brier {m["brier"]:.4f}, ECE {m["ece"]:.4f} (calibration:
  {result.calibrator.method}), prevalence {m["prevalence"]:.3f}
- precision / recall in the top 1%: {m["precision_top1"]:.3f} / {m["recall_top1"]:.3f}; 5%:
  {m["precision_top5"]:.3f} / {m["recall_top5"]:.3f}; 10%: {m["precision_top10"]:.3f} /
  {m["recall_top10"]:.3f}; 20%: {m["precision_top20"]:.3f} / {m["recall_top20"]:.3f}

Against baselines on the same rows: {result.verdict}{_ceiling(m)}

{table_md(result.baselines)}

{result.config.evaluation_title.capitalize()}:

{table_md(evaluation_view(result))}
{transport(result)}"""


def _ceiling(m: dict[str, float]) -> str:
    """The synthetic city's ceiling and the gap to it, where training was asked for it."""
    if "ceiling_auroc" not in m:
        return ""
    return (
        f"\n\nAgainst the synthetic city's truth: the same learner on the same rows, knowing "
        f"each person's hidden traits too, reaches AUROC {m['ceiling_auroc']:.3f}; this model "
        f"is {m['ceiling_gap']:.3f} below that ceiling."
    )


def _fairness(result: Any) -> str:
    """The fairness audit: each group's figures with intervals, and the flags."""
    fair = fairness_summary(result.fairness)
    flagged = f"{result.config.test_title}, top {result.config.capacity:.0%} flagged"
    return f"""## Fairness audit ({flagged})
Each figure with its bootstrap 95% interval. Ratios are against the largest group of each
attribute; O/E is the group's observed over expected (predicted) outcomes. A group is flagged
where it matters for a ranking score, and only where the interval lies wholly outside parity:
an AUROC more than 0.05 below the reference's, or an O/E outside 0.8-1.25; a group under
{result.config.fairness_min_group} persons never is. Error-rate ratios whose interval lies
outside 0.8-1.25 are listed as "rates beyond 4/5": read them with the prevalence (a group with
more outcomes is flagged more often by any calibrated score).
Flags: {", ".join(flag_list(result.fairness)) or "none"}; the promotion gate
refuses a challenger with a flag the champion does not have.

{table_md(fair)}
"""
