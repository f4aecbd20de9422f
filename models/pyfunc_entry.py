"""Entry point MLflow loads the pyfunc from ("models from code": no pickled Python object)."""

import mlflow.models

from models.pyfunc import SunshinePyfunc

mlflow.models.set_model(SunshinePyfunc())
