"""Settings and files behind accounts: the cookie Secure default, the data directory's mode."""

from __future__ import annotations

import logging
import stat

from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from coderapi.datadir import prepare_data_dir


def test_cookie_secure_defaults_by_the_bind_address_and_can_be_pinned():
    assert Settings().resolved_cookie_secure is False  # 127.0.0.1: a laptop, plain http
    assert Settings(host="localhost").resolved_cookie_secure is False
    assert Settings(host="0.0.0.0").resolved_cookie_secure is True  # reachable: meant to sit behind TLS
    assert Settings(host="0.0.0.0", cookie_secure=False).resolved_cookie_secure is False
    assert Settings(cookie_secure=True).resolved_cookie_secure is True


def test_the_app_creates_its_data_directory_private(tmp_path):
    data_dir = tmp_path / "fresh" / "data"
    settings = Settings(data_dir=data_dir, models=[ModelSpec(id="m", backend="fake")], bootstrap_admin=False)
    create_app(settings)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "session_secret").stat().st_mode) == 0o600


def test_an_existing_open_data_directory_is_left_as_it_is_with_a_warning(tmp_path, caplog):
    tmp_path.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="coderapi"):
        prepare_data_dir(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert "chmod 700" in caplog.text
