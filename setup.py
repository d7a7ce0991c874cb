"""The package build: pyproject.toml holds the metadata; this adds the web app's vendored modules to what is built
(scripts/build_webapp.py, run when they are missing: a wheel or sdist from a clean clone carries /app whole)."""

from __future__ import annotations

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _webapp() -> None:
    runpy.run_path(str(ROOT / "scripts" / "build_webapp.py"))["build"](if_missing=True)


class BuildPy(build_py):
    def run(self) -> None:
        _webapp()
        super().run()


class Sdist(sdist):
    def run(self) -> None:
        _webapp()
        super().run()


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
