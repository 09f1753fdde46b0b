"""The data directory (setting data_dir): the SQLite database, the dashboard's session secret and
the model cache live there, so only the server's own user may enter it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("coderapi")
MODE = 0o700


def prepare_data_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700. One that exists already keeps its mode
    (it may be a directory the operator chose and shares on purpose): a warning names the fix
    when others can read or enter it."""
    path = Path(path)
    if not path.exists():
        path.mkdir(mode=MODE, parents=True, exist_ok=True)
        os.chmod(path, MODE)  # mkdir's mode passes through the umask; make it exact
    elif stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("data directory %s is open to other users (mode %o); run: chmod 700 %s",
                    path, stat.S_IMODE(path.stat().st_mode), path)
    return path
