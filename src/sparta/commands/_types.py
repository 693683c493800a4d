"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sparta.attacks import parse_eps
from sparta.errors import SpartaError


def eps_value(text: str) -> float:
    """argparse type for eps: a number or fraction in [0, 1] (0.1, 8/255)."""
    try:
        return parse_eps(text)
    except SpartaError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def option_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON when it parses (numbers, true/false), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.replace("-", "_"), json_or_text(raw)


def json_or_text(raw: str) -> Any:
    """RAW read as JSON when it parses (numbers, true/false), else the string itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def name_list(text: str) -> list[str]:
    """argparse type for a comma list of names; empty items are dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def shard_value(text: str) -> tuple[int, int]:
    """I/K with 0 <= I < K: the I-th of K interleaved slices of a grid."""
    index, sep, count = text.partition("/")
    try:
        i, k = int(index), int(count)
    except ValueError:
        i, k = -1, 0
    if not sep or not 0 <= i < k:
        raise argparse.ArgumentTypeError(f"expected I/K with 0 <= I < K, got '{text}'")
    return i, k


def level_list(text: str) -> tuple[str, list[Any]]:
    """FACTOR=V1,V2,... with each value read as JSON when it parses (numbers, true/false)."""
    factor, sep, raw = text.partition("=")
    levels = [json_or_text(item.strip()) for item in raw.split(",") if item.strip()]
    if not sep or not factor or not levels:
        raise argparse.ArgumentTypeError(f"expected FACTOR=V1,V2,..., got '{text}'")
    return factor.replace("-", "_"), levels
