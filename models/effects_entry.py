"""Entry point MLflow loads the effects pyfunc from ("models from code": no pickled object)."""

import mlflow.models

from models.effects_model import EffectsPyfunc

mlflow.models.set_model(EffectsPyfunc())
