"""Models: the deployable risk model, its registry and monitoring."""

from features.core.cpus import passive_openmp

passive_openmp()  # before any module of the package loads LightGBM (see features.core.cpus)
