"""fit_open_files_limit: the soft limit on open files is lifted to fit max_connections, within the hard
one; where that is too low, the cap is lowered to what fits."""

from __future__ import annotations

import logging
import resource

import pytest

from coderapi.connection_limits import FD_HEADROOM, ConnectionPolicy, fit_open_files_limit


def _policy(max_connections: int) -> ConnectionPolicy:
    return ConnectionPolicy(header_timeout_seconds=10, body_timeout_seconds=60, send_timeout_seconds=60,
                            max_header_bytes=65536,
                            max_connections=max_connections, max_connections_per_client=0)


@pytest.fixture
def limits(monkeypatch):
    state = {}
    monkeypatch.setattr(resource, "getrlimit", lambda _: state["now"])

    def setrlimit(_, value):
        if value[0] > state["now"][1]:
            raise ValueError("not allowed to raise maximum limit")
        state["now"] = value

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    return state


def test_soft_limit_rises_to_fit_the_connections(limits):
    limits["now"] = (1024, 524288)
    assert fit_open_files_limit(_policy(4096)).max_connections == 4096
    assert limits["now"] == (4096 + FD_HEADROOM, 524288)


def test_a_soft_limit_already_high_enough_is_left_alone(limits):
    limits["now"] = (65536, 524288)
    assert fit_open_files_limit(_policy(4096)).max_connections == 4096
    assert limits["now"] == (65536, 524288)


def test_under_a_low_hard_limit_the_cap_is_lowered_to_fit(limits, caplog):
    limits["now"] = (256, 2048)
    with caplog.at_level(logging.WARNING, logger="coderapi.connections"):
        fitted = fit_open_files_limit(_policy(4096))
    assert limits["now"] == (2048, 2048)
    assert fitted.max_connections == 2048 - FD_HEADROOM
    assert "max_connections lowered from 4096 to 1792" in caplog.text


def test_no_cap_changes_nothing(limits):
    limits["now"] = (1024, 524288)
    assert fit_open_files_limit(_policy(0)).max_connections == 0
    assert limits["now"] == (1024, 524288)
