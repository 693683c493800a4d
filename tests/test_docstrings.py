"""Every public name in src/sparta says what it is for: a docstring on each public
module-level function and class, and on each public method of a public class.

Left out: names starting with "_", `forward`, `__init__` and `extra_repr` (nn.Module's
hooks, documented by the class), and trivial properties (one statement, such as
`return self.log_beta.exp()`), whose name says it all.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sparta"
SKIPPED_METHODS = {"forward", "__init__", "extra_repr"}
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _trivial_property(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    decorators = [ast.unparse(d) for d in node.decorator_list]
    is_property = any(d == "property" or d.endswith((".setter", ".deleter")) for d in decorators)
    return is_property and len(node.body) == 1


def undocumented(source: str, where: str) -> list[str]:
    """'where:line name' for each public name of `source` without a docstring."""
    missing = []
    for node in ast.parse(source).body:
        if not isinstance(node, Definition) or node.name.startswith("_"):
            continue
        if ast.get_docstring(node) is None:
            missing.append(f"{where}:{node.lineno} {node.name}")
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if (
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and not item.name.startswith("_")
                and item.name not in SKIPPED_METHODS
                and not _trivial_property(item)
                and ast.get_docstring(item) is None
            ):
                missing.append(f"{where}:{item.lineno} {node.name}.{item.name}")
    return missing


def test_the_checker_finds_undocumented_names() -> None:
    source = '''
def documented():
    """Why."""

def bare(): pass

def _private(): pass

class Plain:
    def method(self): pass

    def forward(self, x): return x

    @property
    def size(self): return 1

    @property
    def busy(self):
        value = 1
        return value

class Told:
    """Why."""

    def told(self):
        """Why."""

class _Hidden:
    def method(self): pass
'''
    assert undocumented(source, "m.py") == ["m.py:5 bare", "m.py:9 Plain", "m.py:10 Plain.method", "m.py:18 Plain.busy"]


def test_every_public_name_has_a_docstring() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40, f"expected the sparta package at {PACKAGE}"
    missing = [
        name
        for path in files
        for name in undocumented(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    ]
    assert not missing, "public names without a docstring (say what each is for):\n" + "\n".join(missing)
