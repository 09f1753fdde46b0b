"""The dashboard's signing secret: from settings, or generated once and kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from coderapi.config import Settings
from coderapi.datadir import prepare_data_dir

SECRET_FILE = "session_secret"


def load_session_secret(settings: Settings) -> bytes:
    """`settings.session_secret` when set; otherwise the contents of `<data_dir>/session_secret`,
    created (mode 0600) with 32 random bytes on first use. Several gateway replicas must share
    one secret: set CODERAPI_SESSION_SECRET for them."""
    if settings.session_secret:
        return settings.session_secret.encode("utf-8")
    path = prepare_data_dir(Path(settings.data_dir)) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made earlier, or by a process racing us: read theirs
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds no usable secret; delete it to have a new one made")
    return value.encode("utf-8")
