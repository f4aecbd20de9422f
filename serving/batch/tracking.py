"""A batch-scoring run recorded in MLflow: the model, the input's hash, counts, tiers and the score
histogram."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.batch.histogram import histogram_svg

if TYPE_CHECKING:
    from serving.batch.runner import RosterScorer, Summary


def log_batch_run(scorer: RosterScorer, summary: Summary) -> str:
    """A batch-inference run in MLflow: model, input hash, counts, tiers, score histogram."""
    import mlflow

    from models.tracking import experiment_id

    job = scorer.job
    with mlflow.start_run(
        experiment_id=experiment_id(f"sunshine-batch-{job.task}"), run_name="score-roster"
    ) as run:
        mlflow.set_tags({"kind": "batch-inference", "task": job.task})
        mlflow.log_params(
            {
                "model_name": scorer.facts["name"],
                "model_version": str(scorer.facts["version"]),
                "input_sha256": scorer.input_sha,
                "input": job.roster.name,
                "as_of": str(scorer.as_of),
                "explain": job.explain,
                "lang": job.lang,
            }
        )
        metrics = {"rows": summary.rows}
        metrics |= {f"rows_{k}": v for k, v in summary.status.items()}
        metrics |= {f"tier_{k}": v for k, v in summary.tiers.items()}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_text(histogram_svg(summary.histogram), "score_histogram.html")
        mlflow.log_artifact(str(job.out.with_suffix(".html")))
        return run.info.run_id
