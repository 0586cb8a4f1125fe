"""Package list for setuptools (everything else is in pyproject.toml).

``pyproject.toml`` cannot combine package discovery with packages that live outside the
package's folder, so the list is made here: every ``analogeq`` package found, plus the data
packages ``analogeq.device_models`` (chip presets, ``devices/`` pulsed-device presets,
``examples/`` an example trace CSV for ``analogeq devices fit``) and
``analogeq.circuits`` (the SPICE library), which ``pyproject.toml`` maps onto the repository's
top-level ``device_models/`` and ``circuits/`` folders.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["analogeq", "analogeq.*"])
      + ["analogeq.device_models", "analogeq.device_models.devices", "analogeq.device_models.examples",
         "analogeq.circuits"])
