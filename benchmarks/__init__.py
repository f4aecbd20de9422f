"""Performance measurements, run from the repository's folder as modules
(`python -m benchmarks.features_bench ...`), and the loopback harness they share with the
tests (`servers.py`: real servers on 127.0.0.1, started, awaited and stopped)."""
