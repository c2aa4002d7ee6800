"""Fuzz targets for every parser, their seed corpora, and a runner (`python -m tests.fuzz`).

Nothing is imported here: the worker imports the sidecars modules under atheris'
instrumentation, which only sees modules imported after it starts.
"""
