"""Where the SPICE subcircuit library lives and how it is read."""

from __future__ import annotations

import os
from pathlib import Path

from analogeq.package_data import data_dir

CIRCUITS_ENV = "ANALOGEQ_CIRCUITS"
"""Environment variable overriding the directory that holds ``analogeq.lib``."""

LIBRARY_NAME = "analogeq.lib"

SUBCIRCUITS = (
    "aeq_dac", "aeq_xbar_pair", "aeq_opamp", "aeq_opamp_1p", "aeq_rc_neuron", "aeq_tanh_b",
    "aeq_tanh_bjt", "aeq_nudge", "aeq_asym",
)
"""Names of the subcircuits ``circuits/analogeq.lib`` defines."""


def circuits_dir() -> Path:
    """Directory of the subcircuit library: ``$ANALOGEQ_CIRCUITS`` if set, else the
    ``analogeq.circuits`` package data (the repository's ``circuits/`` folder, installed with the
    package; in a source checkout that folder itself)."""
    env = os.environ.get(CIRCUITS_ENV)
    if env:
        return Path(env).expanduser()
    return data_dir("circuits")


def library_path() -> Path:
    """Path of ``analogeq.lib``."""
    return circuits_dir() / LIBRARY_NAME


def library_text() -> str:
    """The library's text (copied verbatim into exported netlists). Raises ``FileNotFoundError``
    naming the path and ``$ANALOGEQ_CIRCUITS`` when it is missing."""
    path = library_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"SPICE subcircuit library not found at {path}; set ${CIRCUITS_ENV} to the directory "
            f"holding {LIBRARY_NAME} (the repository's circuits/)"
        )
    return path.read_text()
