"""Imports point only down the layers (api/web -> services -> backends -> engines; crud/store on the
side; protocol, errors, config and clock below everything): the [tool.importlinter] contracts in
pyproject.toml, checked by import-linter's static import graph (nothing is imported or run)."""

from __future__ import annotations

from pathlib import Path

from importlinter import configuration
from importlinter.application.use_cases import lint_imports

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_import_contract_is_kept(capsys):
    configuration.configure()  # what the lint-imports command does first: its readers and printer
    kept = lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, "a wrong-way import (fix the import, not the contract):\n" + report
    assert "0 broken" in report and "9 kept" in report  # every contract ran (a renamed one is noticed)
