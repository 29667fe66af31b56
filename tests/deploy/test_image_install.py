"""What the Dockerfile installs is enough to run the process: for every package an image is built
from, the same `uv sync --frozen --no-dev --no-editable --package <SERVICE>` into an empty
environment, then every module of the package is imported there. A dependency that only the dev
group (or another service) brings in locally fails here rather than in a container."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from .stack_model import ROOT, workspace_packages

# Imports every module of the named packages; not the entry points (`__main__` starts the
# process) nor Alembic's env scripts (they run a migration when imported).
IMPORT_ALL = """
import importlib, pkgutil, sys
failed = []
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name.endswith("__main__") or ".migrations" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def image_packages() -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return sorted(
        {
            str(service["build"]["args"]["SERVICE"])
            for service in compose["services"].values()
            if "build" in service
        }
    )


@pytest.mark.parametrize("package", image_packages())
def test_the_image_install_of_a_package_can_import_all_of_it(package: str, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env.pop("VIRTUAL_ENV", None)
    sync = subprocess.run(
        [uv, "sync", "--quiet", "--frozen", "--no-dev", "--no-editable", "--package", package],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert sync.returncode == 0, sync.stderr
    modules = [top for top, (dist, _) in workspace_packages().items() if dist == package]
    assert modules, f"no workspace member is named {package}"
    imported = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", IMPORT_ALL, *modules],
        cwd=tmp_path,
        env={k: v for k, v in env.items() if not k.startswith("PYTHON")},
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
