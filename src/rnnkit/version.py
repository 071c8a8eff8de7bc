"""rnnkit's version, read from where the running code came from.

In a source checkout (``src/rnnkit`` beside the ``pyproject.toml`` that names rnnkit, which is also
where an editable install points) the checkout's ``pyproject.toml`` is the truth: an installed
distribution's metadata may belong to another copy, or be older than the file. Otherwise the
running code is an installed wheel, and ``importlib.metadata`` has its version.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

CHECKOUT_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
UNKNOWN = "0+unknown"


def checkout_version(pyproject: Path) -> str | None:
    """The version in ``pyproject`` if that file exists and describes rnnkit, else None."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if project.get("name") != "rnnkit" or not isinstance(project.get("version"), str):
        return None
    return project["version"]


def installed_version() -> str:
    """The installed distribution's version, or ``0+unknown`` where none is installed."""
    try:
        return metadata.version("rnnkit")
    except metadata.PackageNotFoundError:
        return UNKNOWN


def package_version() -> str:
    return checkout_version(CHECKOUT_PYPROJECT) or installed_version()
