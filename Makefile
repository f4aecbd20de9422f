PY ?= python3
# `make serve PORT=8080`
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: deploy-check demo serve test java spark-cluster-check lint bench bench-train bench-ctn bench-ctn-docs bench-web mlflow-ui messages browser screenshots clean
AXE := tests/browser/node_modules/axe-core/axe.min.js

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sunshine demo --out demo-data

# two processes on two cores: much of the suite waits on servers, subprocesses and disks;
# whole files in the order tests/conftest.py gives (longest first), not xdist's own order
test: $(STAMP) browser java
	$(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# the Spark equality test on local-cluster mode: separate executor processes, as on a cluster
spark-cluster-check: $(STAMP) java
	SUNSHINE_SPARK_CLUSTER=1 $(BIN)/pytest -q tests/features/test_spark.py -k local_cluster -rs

# Spark (the `spark` extra, in dev) runs on a Java runtime, 17 or newer
java:
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null; \
	  else \
	    echo "Spark needs a Java runtime: sudo apt-get install openjdk-17-jre-headless"; \
	  fi

# what the browser tests drive: Debian's Chromium with a Chinese font (Playwright's own browser
# download cannot work without internet), and axe-core from the npm registry
browser: $(AXE)
	@command -v chromium >/dev/null && fc-list :lang=zh | grep -q . || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null; \
	  else \
	    echo "browser tests need Debian's Chromium and a Chinese font:" \
	         "sudo apt-get install chromium fonts-wqy-zenhei"; \
	  fi

$(AXE): tests/browser/package.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/browser --no-audit --no-fund --silent; \
	  else echo "browser tests need npm (Node.js) for axe-core: sudo apt-get install npm"; fi

# every command of docs/deploy.md, run against this machine's PostgreSQL (nginx for its TLS step)
deploy-check: $(STAMP)
	@command -v nginx >/dev/null || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null; \
	  else echo "deploy-check needs nginx: sudo apt-get install nginx-light"; exit 1; fi
	$(BIN)/python docs/deploy_check.py

# ruff, mypy, and the source's own rules (tests/test_layers.py: layers and rooms one way,
# no function body over 80 lines, serving without the training-only packages)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider tests/test_layers.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.features_bench

bench-web: $(STAMP)
	$(BIN)/python -m benchmarks.web_bench

# the README's screenshots, from a fresh run of the browser tests
screenshots: $(STAMP) browser
	$(BIN)/pytest -q tests/serving/test_browser.py
	$(BIN)/python docs/refresh_screenshots.py

# the web pages' catalogue: extract their messages and merge them into the Chinese one
messages: $(STAMP)
	$(BIN)/pybabel extract -F serving/web/babel.cfg -k N_ -k PageError:2 --no-location \
	  --sort-output -o serving/web/messages.pot .
	$(BIN)/pybabel update -i serving/web/messages.pot -l zh_CN -d serving/web/locale \
	  --no-fuzzy-matching --ignore-obsolete --width 100
	rm serving/web/messages.pot

bench-train: $(STAMP)
	$(BIN)/python -m benchmarks.train_bench

# the CTN-0094 real-data benchmark; DATA_DIR overrides $$SUNSHINE_CTN_DIR / ../shared/data/ctn0094.
# The report goes to bench-out/ctn0094/ (ignored); `make bench-ctn-docs` refreshes the tracked one.
bench-ctn: $(STAMP)
	$(BIN)/sunshine experiment ctn0094 $(if $(DATA_DIR),--data-dir $(DATA_DIR))

bench-ctn-docs: $(STAMP)
	$(BIN)/sunshine experiment ctn0094 --write-docs $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# the demo city's API and web pages (after `make demo`) on http://127.0.0.1:$(PORT)/app/
serve: $(STAMP)
	$(BIN)/sunshine serve --data demo-data/registry --port $(PORT)

mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$${SUNSHINE_HOME:-$(CURDIR)}/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf demo-data bench-out .pytest_cache mlflow.db mlartifacts
