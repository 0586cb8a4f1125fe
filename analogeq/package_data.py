"""Where the data installed with the package lives.

The repository keeps its data in user-facing folders at the top level: ``device_models/`` (chip
presets ``*.toml`` and pulsed-device presets ``devices/*.toml``) and ``circuits/`` (the SPICE
subcircuit library ``analogeq.lib``). A wheel installs them as the data packages
``analogeq.device_models`` and ``analogeq.circuits`` (``pyproject.toml``: ``package-dir`` maps
each package onto its folder, ``package-data`` lists the files). :func:`data_dir` finds them in
either layout.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

__all__ = ["DATA_PACKAGES", "data_dir"]

DATA_PACKAGES = ("device_models", "circuits")
"""Top-level folders of the repository installed as ``analogeq.<name>``."""


def data_dir(name: str) -> Path:
    """Folder of the data package ``analogeq.<name>`` (one of :data:`DATA_PACKAGES`).

    Installed from a wheel, :mod:`importlib.resources` finds it inside the installed package; in
    a source checkout (``analogeq`` imported from the repository, where the folder sits beside
    the package rather than in it) it is the repository's top-level folder.
    """
    if name not in DATA_PACKAGES:
        raise ValueError(f"unknown data folder {name!r}; the package installs {list(DATA_PACKAGES)}")
    try:
        found = resources.files(f"analogeq.{name}")
    except ModuleNotFoundError:  # source checkout: no analogeq/<name> folder
        found = None
    if isinstance(found, Path) and found.is_dir():
        return found
    if found is not None:
        # A data folder has no __init__.py, so it imports as a namespace package, whose
        # resources are a MultiplexedPath over its search locations: take the installed one.
        spec = importlib.util.find_spec(f"analogeq.{name}")
        for location in (spec.submodule_search_locations or []) if spec else []:
            if Path(location).is_dir():
                return Path(location)
    return Path(__file__).resolve().parent.parent / name
