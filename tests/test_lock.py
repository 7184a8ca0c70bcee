"""requirements.txt is the complete lock generated from requirements.in (see the header of requirements.in):
what is installed is exactly what it pins, and each direct dependency is pinned there at its own version.
./serve installs the lock with --no-deps, so a package missing from it would not be installed at all."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.txt"
DIRECT = ROOT / "requirements.in"

# The venv's own tools: `pip freeze` leaves them out (on Python < 3.12) and pip-compile does not pin them.
BOOTSTRAP = {"pip", "setuptools", "wheel", "distribute"}


def canonical(name: str) -> str:
    """PEP 503: `pip freeze` says `zope.interface`, `channels_redis`, `PyYAML`; pip-compile says
    `zope-interface`, `channels-redis`, `pyyaml`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file: no comments, blank lines or `-` options."""
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def pins(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """{canonical name: version} for the `name==version` lines, and the lines that are not such a pin."""
    pinned, other = {}, []
    for line in lines:
        try:
            req = Requirement(line)
        except Exception:
            other.append(line)
            continue
        specs = list(req.specifier)
        if req.url is None and req.marker is None and len(specs) == 1 and specs[0].operator == "==" \
                and "*" not in specs[0].version:
            pinned[canonical(req.name)] = specs[0].version
        else:
            other.append(line)
    return pinned, other


def lock() -> dict[str, str]:
    pinned, _ = pins(requirement_lines(LOCK.read_text()))
    return pinned


def installed() -> tuple[dict[str, str], list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    pinned, other = pins(requirement_lines(out))
    return {name: version for name, version in pinned.items() if name not in BOOTSTRAP}, other


def test_every_requirement_in_the_lock_is_an_exact_pin():
    _, other = pins(requirement_lines(LOCK.read_text()))
    assert not other, f"requirements.txt lines that are not `name==version`: {other}"
    assert lock(), "requirements.txt pins nothing"


def test_the_installed_packages_are_exactly_the_lock():
    got, unpinned = installed()
    want = lock()
    missing = sorted(f"{name}=={want[name]}" for name in want.keys() - got.keys())
    extra = sorted(f"{name}=={got[name]}" for name in got.keys() - want.keys()) + unpinned
    different = sorted(f"{name}: installed {got[name]}, locked {want[name]}"
                       for name in want.keys() & got.keys() if got[name] != want[name])
    assert not (missing or extra or different), (
        f"`{Path(sys.executable).name} -m pip freeze` differs from requirements.txt:\n"
        f"  locked but not installed: {missing}\n"
        f"  installed but not locked: {extra}\n"
        f"  other version installed: {different}\n"
        "Reinstall with ./serve --setup-only (or rm -r .venv first), or regenerate the lock: "
        "see the header of requirements.in."
    )


def test_each_direct_dependency_is_locked_at_its_own_version():
    locked = lock()
    direct = [Requirement(line) for line in requirement_lines(DIRECT.read_text())]
    assert direct, "requirements.in names nothing"
    wrong = []
    for req in direct:
        name = canonical(req.name)
        if name not in locked:
            wrong.append(f"{req}: not in requirements.txt")
        elif locked[name] not in req.specifier:
            wrong.append(f"{req}: requirements.txt pins {locked[name]}")
    assert not wrong, f"requirements.in and requirements.txt disagree: {wrong}"


def test_the_extras_asked_for_in_requirements_in_are_in_the_lock():
    """--no-deps installs no extra by itself, and `pip check` does not look for one nobody asked for:
    psycopg[binary] only gets psycopg-binary because the lock pins it."""
    locked = lock()
    missing = []
    for req in map(Requirement, requirement_lines(DIRECT.read_text())):
        for extra in req.extras:
            for dep in map(Requirement, metadata.requires(req.name) or []):
                if dep.marker is not None and dep.marker.evaluate({"extra": extra}) \
                        and not dep.marker.evaluate({"extra": ""}) and canonical(dep.name) not in locked:
                    missing.append(f"{dep.name} (for {req.name}[{extra}])")
    assert not missing, f"extras' packages missing from requirements.txt: {missing}"
