"""The synthetic Guiyang-like city that stands in for a registry in the demo, the tests and
the benchmarks."""
