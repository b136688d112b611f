"""The routes to an environment agree: pyproject, the lock, environment.yml, the Makefile and CI."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_declared_dependency_is_pinned_in_the_lock():
    declared = PYPROJECT["project"]["dependencies"] + [
        r for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra
    ]
    locked = _locked()
    missing = sorted({_name(r) for r in declared} - set(locked))
    assert not missing, f"declared in pyproject.toml but not pinned in requirements.lock: {missing}"
    assert all(v and v[0].isdigit() for v in locked.values()), "every lock line must be name==version"


def test_environment_yml_installs_the_same_thing_as_make():
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- python=3\.12\s*$", env, re.M), "environment.yml must pin python=3.12"
    assert "- -c requirements.lock" in env and "- -e .[test,lab,docs]" in env
    make = (ROOT / "Makefile").read_text()
    assert "-c requirements.lock" in make and '-e ".[test,lab,docs]"' in make
    assert PYPROJECT["project"]["requires-python"] == ">=3.12" and "((3, 12), (3, 13))" in make


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _fake_python(path: Path, version: str) -> None:
    """An executable that answers the bootstrap's version check as a Python `version` would."""
    ok = version in ("3.12", "3.13")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexit {0 if ok else 1}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    "present, chosen",
    [
        ({"bin/python3.12": "3.12", "bin/python3.13": "3.13"}, "python3.12"),  # 3.12 first: what Colab runs
        ({"bin/python3.13": "3.13"}, "python3.13"),
        ({"home/.pyenv/versions/3.13.0/bin/python3.13": "3.13"}, "home/.pyenv/versions/3.13.0/bin/python3.13"),
        ({"bin/python3.12": "3.11"}, ""),  # a python3.12 that is not 3.12 is refused
        ({}, ""),
    ],
)
def test_the_bootstrap_picks_python_3_12_or_3_13(tmp_path, present, chosen):
    for name, version in present.items():
        _fake_python(tmp_path / name, version)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    out = subprocess.run(["sh", str(ROOT / "tools" / "find_python.sh")], env=env, capture_output=True, text=True)
    expected = chosen if not chosen.startswith("home/") else str(tmp_path / chosen)
    assert out.stdout.strip() == expected, out


@pytest.mark.slow
def test_the_installed_package_has_every_module_and_the_recorded_results(tmp_path):
    """What Colab gets from `pip install git+...`: a wheel, not this checkout. Every helpers module must be in it
    (helpers.exercises once was not), and the recorded study results the notebooks read."""
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(ROOT / "helpers", source / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w"]
    subprocess.run([*build, str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "helpers").rglob("*.py")}
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "helpers" / "recorded").glob("*.json")}
    assert "helpers/recorded/deep_cnn.json" in expected
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
