"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sparta.attacks import parse_eps
from sparta.errors import SpartaError


def eps_value(text: str) -> float:
    try:
        return parse_eps(text)
    except SpartaError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def option_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON when it parses (numbers, true/false), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    try:
        return key.replace("-", "_"), json.loads(raw)
    except json.JSONDecodeError:
        return key.replace("-", "_"), raw


def bool_value(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def name_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
