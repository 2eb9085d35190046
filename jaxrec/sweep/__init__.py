"""Sweeps: definitions (`experiments/*.py`: a base config and override points), the `jaxrec sweep` launcher and
the results table (`collect_results`) that the scaling-law fits and reports read."""

from jaxrec.sweep.results import collect_results, write_results
from jaxrec.sweep.spec import (
    Point,
    Sweep,
    expand,
    grid,
    labelled,
    load_sweep,
    product,
    zip_,
)

__all__ = ["Point", "Sweep", "collect_results", "expand", "grid", "labelled", "load_sweep", "product", "write_results",
           "zip_"]
