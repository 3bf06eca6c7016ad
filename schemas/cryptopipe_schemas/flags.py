"""What every entry point's command line shares: --version, --log-level, defaults in --help."""

from __future__ import annotations

import argparse
from importlib import metadata

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help adds "(default: ...)" to a flag's help, unless there is none to show (None,
    False, empty) or the help already speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if (
            default is None
            or default is False
            or (isinstance(default, str | list | tuple) and not default)
            or "default" in (action.help or "")
        ):
            return action.help
        return super()._get_help_string(action)


def version_of(package: str | None) -> str:
    """The installed version of the distribution that holds `package` (an import name)."""
    try:
        return metadata.version((package or "").partition(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return "unknown (not installed)"


def entry_parser(
    package: str | None, prog: str, description: str | None
) -> argparse.ArgumentParser:
    """An entry point's parser: every default shown in --help, and --version, which prints the
    version of the distribution that holds `package` (pass `__package__`)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=DefaultsFormatter
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {version_of(package)}",
        help="print the version and exit",
    )
    return parser


def add_log_level(parser: argparse.ArgumentParser, default: str = "INFO") -> None:
    """--log-level: one of LOG_LEVELS, in any case."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help="least severe level logged",
    )
