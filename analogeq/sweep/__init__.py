"""Sweeps over hardware and training parameters: many chips, many settings, one table.

See :class:`~analogeq.sweep.spec.SweepSpec` for the ``sweep.toml`` format and
:func:`~analogeq.sweep.driver.run_sweep` (``analogeq sweep``) for what is written.
"""

from analogeq.sweep.execute import SweepOutcome, execute, run_one
from analogeq.sweep.driver import SweepResult, load_spec, run_sweep
from analogeq.sweep.spec import Distribution, Job, SweepSpec, run_key

__all__ = ["Distribution", "Job", "SweepOutcome", "SweepResult", "SweepSpec", "execute", "load_spec",
           "run_key", "run_one", "run_sweep"]
