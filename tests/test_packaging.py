"""The routes to an environment agree: pyproject, the lock, environment.yml, the Makefile and CI."""

import re
import tomllib
from pathlib import Path

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
    assert "- -c requirements.lock" in env and "- -e .[test,lab]" in env
    make = (ROOT / "Makefile").read_text()
    assert "-c requirements.lock" in make and '-e ".[test,lab]"' in make
    assert PYPROJECT["project"]["requires-python"] == ">=3.12" and "(3, 12)" in make


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
