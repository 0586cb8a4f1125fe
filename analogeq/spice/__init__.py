"""SPICE export and validation of small chip blocks with ngspice (Ngspice User's Manual; PySpice).

* :func:`chip_netlist` writes a realized :class:`analogeq.hardware.Chip` (its sampled
  conductances, offsets, gains, rails, amplifier pole) as a self-contained netlist built from
  ``circuits/analogeq.lib``, with ``.op`` and ``.tran`` analyses, in SI units.
* :func:`run_netlist` runs it in ngspice (PySpice shared library) and returns node voltages;
  :meth:`Netlist.states` maps them back to chip states.
* :func:`validate` compares ``.op`` with the ODE steady state and ``.tran`` with the ODE
  trajectory.
* :class:`SpiceRelaxation` is ngspice as a relaxation: ``EP(...).estimate(chip, cost,
  SpiceRelaxation(chip.config), xs, ys)`` is SPICE-in-the-loop EP; :func:`compare_with_ode`
  compares it with the same estimator on the chip's ODE.
* :func:`build_block` makes the reference blocks (:data:`BLOCKS`).
* Trained runs: :func:`analogeq.spice_report.run_chip` reads a run's chip (the run layer, above
  this package), :func:`export_chip` writes it (one netlist or layer blocks,
  :func:`layer_blocks`), :func:`validate_run` runs its test samples through ngspice against the
  ODE, :func:`analogeq.spice_report.spice_report` writes the hand-on folder
  (docs/spice-export.md).
* Noise: :class:`NoiseSpec` adds thermal-noise sources (``trrandom``/``trnoise``); :func:`noise_validation`
  compares ngspice's node variance with the chip's SDE and ``kT/C``.
"""

from analogeq.spice.export import Export, RunChip, export_chip, read_netlist
from analogeq.spice.noise import NoiseSpec, interpolation_factor, noise_source
from analogeq.spice.noise_check import NoiseValidation, noise_validation
from analogeq.spice.partition import layer_blocks
from analogeq.spice.run_validation import RunValidation, validate_run
from analogeq.spice.blocks import BLOCKS, block_sizes, build_block, reference_netlist, spice_config
from analogeq.spice.library import CIRCUITS_ENV, SUBCIRCUITS, circuits_dir, library_path, library_text
from analogeq.spice.loop import compare_with_ode
from analogeq.spice.nonlinearity import NonlinearitySweep, sweep_nonlinearity
from analogeq.spice.netlist import MAX_NEURONS, Netlist, Nudge, SpiceOptions, check_block, chip_netlist
from analogeq.spice.relaxation import SpiceRelaxation, asym_matrix
from analogeq.spice.runner import (
    INSTALL_HINT,
    NgspiceNotFound,
    SpiceConvergenceError,
    SpiceError,
    SpiceResult,
    available,
    find_libngspice,
    run_netlist,
    session,
)
from analogeq.spice.wires import TileOperatingPoint, tile_netlist, tile_op
from analogeq.spice.validate import (
    Validation,
    ode_steady_state,
    ode_trajectory,
    reference_relaxation,
    require_float64,
    settle_time,
    validate,
)

__all__ = [
    "BLOCKS", "CIRCUITS_ENV", "INSTALL_HINT", "MAX_NEURONS", "SUBCIRCUITS",
    "Netlist", "NgspiceNotFound", "Nudge", "SpiceConvergenceError", "SpiceError", "SpiceRelaxation",
    "NonlinearitySweep", "SpiceOptions", "SpiceResult", "Validation",
    "asym_matrix", "available", "block_sizes", "build_block", "check_block", "chip_netlist", "circuits_dir",
    "compare_with_ode", "find_libngspice", "library_path", "library_text", "ode_steady_state",
    "ode_trajectory", "reference_netlist", "reference_relaxation", "require_float64", "run_netlist", "session",
    "settle_time", "spice_config", "sweep_nonlinearity", "validate",
    "Export", "NoiseSpec", "NoiseValidation", "RunChip", "RunValidation", "export_chip", "interpolation_factor",
    "layer_blocks", "noise_validation", "read_netlist", "noise_source", "validate_run",
    "TileOperatingPoint", "tile_netlist", "tile_op",
]
