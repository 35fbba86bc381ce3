"""environment.yml (conda) and pyproject.toml (pip) name the same dependencies."""

import re

import yaml
from packaging.requirements import Requirement

from csoa_nb.book.runbook import REPO_ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

#: conda-forge names that differ from the PyPI name.
CONDA_TO_PYPI = {"pytorch": "torch"}
#: conda packages that make the environment rather than the project's dependencies.
CONDA_ONLY = {"python", "pip"}
NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(requirement: str) -> str:
    """The package name of a pip or conda requirement, lowercase with ``-`` separators."""
    match = NAME_RE.match(requirement)
    assert match, f"cannot read a package name from {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def load():
    with (REPO_ROOT / "environment.yml").open(encoding="utf-8") as f:
        env = yaml.safe_load(f)
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    return env, project


def split_env(env: dict) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip entries) of a conda environment file."""
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
        else:
            conda.append(str(dep))
    return conda, pip


def test_python_311_with_pip_installing_the_project():
    env, _ = load()
    conda, pip = split_env(env)
    assert any(re.fullmatch(r"python\s*=?=\s*3\.11(\.\*)?", d) for d in conda), conda
    assert "pip" in conda, "environment.yml must install pip"
    editable = [" ".join(e.split()).replace("'", "").replace('"', "") for e in pip]
    assert "-e .[book,test]" in editable, f"the pip section must install -e .[book,test]: {pip}"


def test_same_dependency_names():
    env, project = load()
    conda, pip = split_env(env)
    wanted = {normalise(r) for r in project["dependencies"]}
    for extra in ("book", "test"):
        wanted |= {normalise(r) for r in project["optional-dependencies"][extra]}
    named = {CONDA_TO_PYPI.get(normalise(d), normalise(d)) for d in conda} - CONDA_ONLY
    named |= {normalise(e) for e in pip if not e.lstrip().startswith("-")}
    assert not wanted - named, f"in pyproject.toml, not in environment.yml: {wanted - named}"
    assert not named - wanted, f"in environment.yml, not in pyproject.toml: {named - wanted}"


def read_lock() -> dict[str, str]:
    """requirements-lock.txt as {normalised name: version}; every line pins with ==."""
    pins = {}
    for line in (REPO_ROOT / "requirements-lock.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"requirements-lock.txt: {line!r} does not pin a version"
        pins[normalise(name)] = version.strip()
    return pins


def test_lock_pins_a_version_of_every_dependency_that_pyproject_allows():
    _, project = load()
    pins = read_lock()
    requirements = list(project["dependencies"])
    for extra in ("book", "test"):
        requirements += project["optional-dependencies"][extra]
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        name = normalise(requirement.name)
        if name not in pins:
            problems.append(f"{text}: not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{text}: the lock pins {pins[name]}")
    assert not problems, "requirements-lock.txt is out of date (make lock): " + "; ".join(problems)
    assert "csoa-nb" not in pins  # the project installs itself, editable
