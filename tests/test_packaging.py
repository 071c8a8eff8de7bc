"""The package as a user gets it: ``python -m build`` makes an sdist and a wheel (from that sdist),
both hold every file the code reads, and the wheel installed in a fresh venv runs the CLI.

The build runs on a copy of pyproject.toml, README.md and src/ in a temporary directory, so the
checkout gets no build/ or egg-info, and with ``--no-isolation`` (the running environment's
setuptools), so it needs no network. The fresh venv (slow test) gets rnnkit from the wheel only;
its dependencies (torch and the rest) come from this environment through a ``.pth`` file, so
nothing is downloaded (docs/packaging.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from rnnkit import __version__
from rnnkit.data.reading import DEFAULT_CORPUS
from rnnkit.kernels.fused import SOURCE as FUSED_SOURCE
from rnnkit.version import UNKNOWN, checkout_version, installed_version

ROOT = Path(__file__).resolve().parents[1]
WHEEL = f"rnnkit-{__version__}-py3-none-any.whl"
SDIST = f"rnnkit-{__version__}.tar.gz"


def tracked_package_files() -> set[str]:
    """The files git tracks under src/rnnkit, as paths inside the wheel (rnnkit/...)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "src/rnnkit"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return {line.removeprefix("src/") for line in out.splitlines()}


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH (which would put the checkout's src/ first)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel, built once for this module from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    out = tmp / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [WHEEL, SDIST]
    return out


def wheel_names(dist: Path) -> set[str]:
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        return set(wheel.namelist())


def test_the_wheel_holds_every_file_git_tracks_in_the_package(dist):
    missing = tracked_package_files() - wheel_names(dist)
    assert not missing, f"not in the wheel (add their kind to package-data): {sorted(missing)}"


def test_the_wheel_holds_the_files_the_code_reads(dist):
    names = wheel_names(dist)
    assert f"rnnkit/data/{DEFAULT_CORPUS}" in names  # the bundled Shakespeare (charlm's default)
    assert f"rnnkit/kernels/fused/{FUSED_SOURCE.name}" in names  # compiled on first use
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        info = f"rnnkit-{__version__}.dist-info"
        assert "rnnkit = rnnkit.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()
        assert f"Version: {__version__}\n" in wheel.read(f"{info}/METADATA").decode()
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_the_sdist_holds_the_sources_and_the_data(dist):
    with tarfile.open(dist / SDIST) as sdist:
        names = {n.removeprefix(f"rnnkit-{__version__}/") for n in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "PKG-INFO"} <= names
    missing = {f"src/{n}" for n in tracked_package_files()} - names
    assert not missing, sorted(missing)


def test_the_version_comes_from_the_checkout_here():
    version = checkout_version(ROOT / "pyproject.toml")
    assert version is not None and __version__ == version


def test_a_pyproject_of_another_project_or_none_gives_no_version(tmp_path):
    assert checkout_version(tmp_path / "pyproject.toml") is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "9.9"\n')
    assert checkout_version(tmp_path / "pyproject.toml") is None
    (tmp_path / "pyproject.toml").write_text("[project\n")
    assert checkout_version(tmp_path / "pyproject.toml") is None


def test_without_an_installed_distribution_the_version_says_unknown(monkeypatch):
    from importlib import metadata

    def not_found(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_found)
    assert installed_version() == UNKNOWN


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=clean_env())
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_the_cli_runs(dist, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(run([str(python), "-c", purelib], tmp_path).strip())
    # The dependencies: this environment's site-packages, after the venv's own (a plain path
    # line: the .pth files there, such as an editable install of the checkout, are not run).
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "rnnkit-dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    run([*pip, "install", "--no-deps", "--no-index", str(dist / WHEEL)], tmp_path)

    work = tmp_path / "work"  # not the checkout: its src/ must not be importable
    work.mkdir()
    where = run([str(python), "-c", "import rnnkit; print(rnnkit.__file__)"], work).strip()
    assert Path(where).is_relative_to(venv), where
    rnnkit = str(venv / "bin" / "rnnkit")
    assert "commands:" in run([rnnkit, "--help"], work)
    assert run([rnnkit, "--version"], work).strip() == f"rnnkit {__version__}"
    run([rnnkit, "train", "charlm", "--preset", "tiny", "--out", str(work / "run")], work)
    assert (work / "run" / "last.safetensors").is_file()
