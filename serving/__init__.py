"""Serving: the API, the web pages and batch scoring over the champions."""

from features.core.cpus import passive_openmp

passive_openmp()  # before any module of the package loads LightGBM (see features.core.cpus)
