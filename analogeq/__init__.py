"""analogeq: co-design analog in-memory hardware that learns on-chip with Equilibrium Propagation.

The public API is flat: every name a user needs is an attribute of ``analogeq`` (models, costs,
relaxations, estimators, the chip and its configuration, training, comparison, sweeps, SPICE).
The modules behind it are the implementation; their layout may change. The core (models, costs,
relaxations, estimators) is imported eagerly; the rest resolves on first use, so that the
command line starts without loading the chip simulator, ngspice or Dask it does not need.
"""

from __future__ import annotations

import importlib

from analogeq.config import TrainConfig as TrainConfig
from analogeq.costs import AbstractCost as AbstractCost
from analogeq.costs import CrossEntropy as CrossEntropy
from analogeq.costs import SquaredError as SquaredError
from analogeq.costs import TokenCrossEntropy as TokenCrossEntropy
from analogeq.costs import make_cost as make_cost
from analogeq.emulator import AbstractRelaxation as AbstractRelaxation
from analogeq.emulator import EulerRelaxation as EulerRelaxation
from analogeq.emulator import RelaxResult as RelaxResult
from analogeq.emulator import residual as residual
from analogeq.ep import BPTT as BPTT
from analogeq.ep import EP as EP
from analogeq.ep import AbstractEstimator as AbstractEstimator
from analogeq.ep import EnergyEP as EnergyEP
from analogeq.ep import Estimate as Estimate
from analogeq.ep import FreeTerm as FreeTerm
from analogeq.ep import ImplicitAdjoint as ImplicitAdjoint
from analogeq.ep import NudgedTerm as NudgedTerm
from analogeq.ep import compare_gradients as compare_gradients
from analogeq.ep import force_gradient as force_gradient
from analogeq.ep import free_phase as free_phase
from analogeq.ep.recipe import AdaptiveEP as AdaptiveEP
from analogeq.ep.recipe import RefinedEulerRelaxation as RefinedEulerRelaxation
from analogeq.ep.recipe import WithReadoutGradient as WithReadoutGradient
from analogeq.models import AbstractConservativeModel as AbstractConservativeModel
from analogeq.models import AbstractModel as AbstractModel
from analogeq.models import EqTransformer as EqTransformer
from analogeq.models import HopfieldNetwork as HopfieldNetwork
from analogeq.models import LeakyNetwork as LeakyNetwork
from analogeq.streams import Streams as Streams
from analogeq.updaters import AbstractUpdater as AbstractUpdater
from analogeq.updaters import OptaxUpdater as OptaxUpdater

__version__ = "0.1.0"

_LAZY = {
    # assembly and the training loop
    "RunParts": "analogeq.training",
    "TrainResult": "analogeq.training",
    "fit": "analogeq.training",
    "make_train_step": "analogeq.training",
    "evaluate": "analogeq.evaluation",
    "train": "analogeq.assembly",
    "build_parts": "analogeq.assembly",
    "build_digital": "analogeq.assembly",
    "build_analog": "analogeq.assembly",
    "with_parts": "analogeq.assembly",
    "load_hardware": "analogeq.assembly",
    "load_run": "analogeq.runs",
    "Run": "analogeq.runs",
    # the chip
    "ChipConfig": "analogeq.hardware.config",
    "ConfigError": "analogeq.spec",
    "Chip": "analogeq.hardware.chip",
    "ChipRelaxation": "analogeq.hardware.dynamics",
    "realize": "analogeq.hardware.realize",
    "available_presets": "analogeq.hardware.config",
    # data and devices
    "load_task": "analogeq.data",
    "register_task": "analogeq.data",
    "Dataset": "analogeq.data",
    "load_device": "analogeq.devices.presets",
    "available_devices": "analogeq.devices.presets",
    "fit_traces": "analogeq.devices.fit",
    # reports
    "compare": "analogeq.compare",
    "evaluate_chips": "analogeq.montecarlo",
    "map_chips": "analogeq.montecarlo",
    "train_chips": "analogeq.fleet",
    "ChipsResult": "analogeq.fleet",
    "diagnose_run": "analogeq.run_diagnostics",
    "analog_verdict": "analogeq.run_diagnostics",
    "energy_report": "analogeq.energy_report",
    "run_chip": "analogeq.spice_report",
    "spice_report": "analogeq.spice_report",
    "run_sweep": "analogeq.sweep",
    "SweepSpec": "analogeq.sweep",
    # ngspice as a relaxation
    "SpiceRelaxation": "analogeq.spice.relaxation",
    # submodules used as namespaces
    "diagnostics": None,
    "spice": None,
    "stability": None,
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'analogeq' has no attribute {name!r}")
    module = _LAZY[name]
    value = (importlib.import_module(f"analogeq.{name}") if module is None
             else getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = sorted([
    "AbstractConservativeModel", "AbstractCost", "AbstractEstimator", "AbstractModel",
    "AbstractRelaxation", "AbstractUpdater", "AdaptiveEP", "BPTT", "CrossEntropy", "EP", "EnergyEP",
    "EqTransformer", "Estimate", "EulerRelaxation", "FreeTerm", "HopfieldNetwork", "ImplicitAdjoint",
    "LeakyNetwork", "NudgedTerm", "OptaxUpdater", "RefinedEulerRelaxation", "RelaxResult", "SquaredError", "Streams",
    "TokenCrossEntropy", "TrainConfig", "WithReadoutGradient", "compare_gradients", "force_gradient",
    "free_phase", "make_cost", "residual", *_LAZY,
])
