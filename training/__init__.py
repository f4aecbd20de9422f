"""Training: fitting, calibrating and auditing models on built features."""

from features.core.cpus import passive_openmp

passive_openmp()  # before any module of the package loads LightGBM (see features.core.cpus)
