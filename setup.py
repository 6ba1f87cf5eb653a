"""Package discovery, kept here because pyproject.toml cannot express it.

The presets are edited in the top-level `experiments/`, `tune_spaces/` and `studies/` folders (the project card's
layout) and ship in the wheel as package data under `orchestrator/presets/`: setuptools' `package_dir`
maps a package name onto another folder, and pyproject's `packages` is either a `find` directive or a
list, never both (https://setuptools.pypa.io/en/latest/userguide/package_discovery.html,
https://setuptools.pypa.io/en/latest/userguide/pyproject_config.html). Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

PRESETS = {f"orchestrator.presets.{kind}": kind for kind in ("experiments", "tune_spaces", "studies")}

setup(packages=find_packages(include=["ddcore*", "orchestrator*"]) + list(PRESETS), package_dir=PRESETS)
