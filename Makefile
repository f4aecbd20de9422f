PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-train bench-ctn bench-ctn-docs mlflow-ui clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sunshine demo --out demo-data

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/features_bench.py

bench-train: $(STAMP)
	$(BIN)/python benchmarks/train_bench.py

# the CTN-0094 real-data benchmark; DATA_DIR overrides $$SUNSHINE_CTN_DIR / ../shared/data/ctn0094.
# The report goes to bench-out/ctn0094/ (ignored); `make bench-ctn-docs` refreshes the tracked one.
bench-ctn: $(STAMP)
	$(BIN)/sunshine experiment ctn0094 $(if $(DATA_DIR),--data-dir $(DATA_DIR))

bench-ctn-docs: $(STAMP)
	$(BIN)/sunshine experiment ctn0094 --write-docs $(if $(DATA_DIR),--data-dir $(DATA_DIR))

mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf demo-data bench-out .pytest_cache mlflow.db mlartifacts
