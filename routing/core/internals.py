"""Reading a list of another project's private names: which of them the installed packages still have.

An entry is "a.b.C.name" (the module or class has `name`) or "name in a.b.C.method" (that code still uses
`name`: an attribute set or read there, a method called there), for what lives on instances only. The
lists live beside the code that uses the names (`shimsite/fast_path.py`, `routing/lmstudio/events.py`);
why each is used: docs/internals.md.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Iterable

NOT_FOUND = object()


def missing_from(entries: Iterable[str]) -> list[str]:
    """The entries that are not found as written."""
    return [entry for entry in entries if not found(entry)]


def found(entry: str) -> bool:
    name, _, where = entry.partition(" in ")
    if not where:
        where, _, name = entry.rpartition(".")
    owner = resolve(where)
    if owner is NOT_FOUND:
        return False
    code = getattr(owner, "__code__", None)
    return name in code.co_names if code is not None else hasattr(owner, name)


def resolve(dotted: str):
    """The module, class or function named `dotted`, or NOT_FOUND."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            target = getattr(target, part, NOT_FOUND)
            if target is NOT_FOUND:
                break
        return target
    return NOT_FOUND


def source_digest(dotted: str) -> str | None:
    """The SHA-256 of the source of what `dotted` names (None when not found, or no source to read)."""
    try:
        return hashlib.sha256(inspect.getsource(resolve(dotted)).encode()).hexdigest()
    except (OSError, TypeError):
        return None
