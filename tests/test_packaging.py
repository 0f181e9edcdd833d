"""The wheel (a non-editable install) holds every module of autohm/, kernels/ as autohm.kernels and
search_spaces/ as autohm.search_spaces, and never a top-level `kernels` package."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def expected_files() -> set[str]:
    """Where each source file must land in the wheel."""
    mapping = {
        "autohm": "autohm",
        "kernels": "autohm/kernels",
        "search_spaces": "autohm/search_spaces",
    }
    files = set()
    for source, target in mapping.items():
        for path in (ROOT / source).rglob("*"):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                files.add(f"{target}/{path.relative_to(ROOT / source).as_posix()}")
    return files


def test_wheel_layout(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("autohm-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert expected_files() - names == set()
    assert "autohm/kernels/__init__.py" in names and "autohm/search_spaces/__init__.py" in names
    top_level = {name.split("/")[0] for name in names if "/" in name}
    assert top_level <= {"autohm", next(n.split("/")[0] for n in names if ".dist-info/" in n)}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "autohm = autohm.cli:main" in archive.read(entry_points).decode()


def test_compiled_kernels_are_cached_outside_the_package(tmp_path):
    """numba's cache files go to $AUTOHM_CACHE/numba, never beside the installed sources (pip
    would leave them behind on uninstall, and a leftover autohm/ directory of them shadows a
    later editable install); numba's own setting is left as the user had it."""
    script = (
        "import numba, numpy as np\n"
        "from autohm.scan_order.solvers import SOLVERS, PathProblem\n"
        "distances = np.random.default_rng(0).random((12, 12))\n"
        "SOLVERS['nearest_neighbor'](PathProblem(distances + distances.T))\n"
        "print(repr(numba.config.CACHE_DIR))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
        env=environment | {"AUTOHM_CACHE": str(tmp_path / "cache")}, check=True,
    )  # fmt: skip
    assert run.stdout.strip() == "''"
    assert list((tmp_path / "cache" / "numba").rglob("*solvers*.nbi"))
