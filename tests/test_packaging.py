"""The wheel (a non-editable install) holds every module of autohm/, kernels/ as autohm.kernels and
search_spaces/ as autohm.search_spaces, and never a top-level `kernels` package."""

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
