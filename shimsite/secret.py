"""The installation's own secret key: made once, kept in a file outside git readable only by its owner.

Django signs sessions, CSRF tokens and the messages cookie with SECRET_KEY; a key published in a
repository lets anyone forge them. So no key ships with the code: the first process that needs one
generates it (`./serve --setup-only` does, and so does any `manage.py` or Daphne start).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def installation_key(path: Path) -> str:
    """The key stored at `path`, created (mode 0600) when missing. Concurrent first starts agree: the
    key is written to a private temporary file and linked into place only if no other process got there
    first."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(50) + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process won: use its key
    finally:
        temporary.unlink()
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it to have a new key made")
    return key
