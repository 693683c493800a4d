"""One module per `sparta` subcommand, found by discovery.

Each module defines NAME, HELP, `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def command_modules() -> dict[str, ModuleType]:
    """Every subcommand module by its NAME, in file-name order (modules starting with _ are helpers)."""
    modules = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        modules[module.NAME] = module
    return modules
