"""Helpers shared by the test suite and the benchmarks (not shipped: the wheel holds sidecars/
only): processes, ports and deadlines, the HTTP corpus, running the warloader in-process."""
