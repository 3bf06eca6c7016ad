"""Every entry point's command line: --version, --log-level's choices, help on every flag."""

from __future__ import annotations

import argparse
import importlib
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dashboard import config as dashboard_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ("schemas", "model", "jobs", "operator", "dashboard")


def _scripts() -> dict[str, str]:
    scripts: dict[str, str] = {}
    for member in MEMBERS:
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
        scripts.update(project.get("scripts", {}))
    return scripts


SCRIPTS = _scripts()


def _target(reference: str) -> tuple[Callable[[list[str]], Any], Any]:
    """The script's main and its module."""
    module_name, _, function = reference.partition(":")
    module = importlib.import_module(module_name)
    main: Callable[[list[str]], Any] = getattr(module, function)
    return main, module


def _version(module: Any) -> str:
    return metadata.version(module.__name__.partition(".")[0])


def _required(module: Any) -> list[str]:
    """Values for the flags a parser requires."""
    parser: argparse.ArgumentParser = module.build_parser()
    return [
        item
        for action in parser._actions
        if action.required
        for item in (action.option_strings[0], "x")
    ]


def test_every_workspace_script_is_covered() -> None:
    assert {
        "cryptopipe-producer",
        "cryptopipe-aggregate",
        "cryptopipe-hive-ddl",
        "cryptopipe-train",
        "cryptopipe-predict",
        "cryptopipe-operator",
    } <= set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_version_prints_the_package_version(
    script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main, module = _target(SCRIPTS[script])
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"{script} {_version(module)}"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_log_level_takes_only_real_levels(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    main, module = _target(SCRIPTS[script])
    with pytest.raises(SystemExit) as exited:
        main(["--log-level", "nonsense"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    args = module.build_parser().parse_args(["--log-level", "debug", *_required(module)])
    assert args.log_level == "DEBUG"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = {script: _target(SCRIPTS[script])[1].build_parser() for script in SCRIPTS}
    parsers["cryptopipe-dashboard"] = dashboard_config.build_parser()
    return parsers


def test_every_flag_has_help_and_defaults_show() -> None:
    for script, parser in _parsers().items():
        for action in parser._actions:
            assert action.help, f"{script} {action.option_strings} has no help"
        text = parser.format_help()
        assert "--version" in text
        if script != "cryptopipe-dashboard":
            assert "(default: INFO)" in text, script


def test_dashboard_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        dashboard_config.parse(["--version"])
    assert exited.value.code == 0
    expected = metadata.version("cryptopipe-dashboard")
    assert capsys.readouterr().out.strip() == f"cryptopipe-dashboard {expected}"
