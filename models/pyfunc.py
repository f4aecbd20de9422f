"""The MLflow pyfunc wrapper, so `mlflow models serve` and `mlflow.pyfunc.load_model` work too."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from models.risk_model import RiskModel

ARTIFACT_KEY = "risk_model"


class SunshinePyfunc(mlflow.pyfunc.PythonModel):
    """Feature rows in; calibrated probability, raw log-odds score, percentile and tier out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = RiskModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        scored = self.model.score(model_input)
        return pd.DataFrame(
            {
                "probability": scored.probability,
                "raw_score": scored.raw_score,
                "percentile": scored.percentile,
                "tier": scored.tier,
            }
        )
