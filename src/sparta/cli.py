"""The `sparta` command line (docs/design.md section 3); subcommands live in sparta.commands.

Every failure the user can fix prints one line, `sparta: error: ...`, and exits with 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sparta.commands import command_modules
from sparta.errors import SpartaError
from sparta.progress import show_messages


def one_line(message: object) -> str:
    """The message on one line: a line break inside a value the user gave shows as \\n."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (not the usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print the argparse error as one `sparta: error:` line and exit with 2."""
        if "required: command" in message:
            message = f"choose a command: {', '.join(command_modules())} (`sparta --help` says what each does)"
        else:
            message = f"{message} (see `{self.prog} --help`)"
        self.exit(2, f"sparta: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The `sparta` parser, one subcommand per module of sparta.commands."""
    parser = OneLineParser(
        prog="sparta", description="Train and honestly evaluate robust CNNs with the Sparta activation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in command_modules().items():
        # argparse %-formats help strings: a literal % (as in "95% CI") must be doubled
        module.add_arguments(sub.add_parser(name, help=module.HELP.replace("%", "%%"), description=module.__doc__))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sparta` command: run the subcommand, a SpartaError becomes one line and exit 2."""
    args = build_parser().parse_args(argv)
    show_messages()
    try:
        return command_modules()[args.command].run(args)
    except SpartaError as err:
        print(f"sparta: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the environment (disk full, permissions, a file where a folder goes)
        where = f" ({err.filename})" if err.filename else ""
        problem = one_line(f"{err.strerror or err}{where}")
        print(f"sparta: error: {problem}; files written before stay as they were", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparta: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not bad input: one line still, the traceback on request
        if os.environ.get("SPARTA_DEBUG"):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"sparta: internal error: {type(err).__name__}: {first[:300]} "
            "(a bug in sparta; rerun with SPARTA_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
