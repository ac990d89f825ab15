"""Tools for working on rmr1-plugins itself (not imported by the package): ``reference`` writes
docs/reference/ from the docstrings."""
