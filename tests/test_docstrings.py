"""Every public class and function of the package says what it takes, returns and raises."""

from __future__ import annotations

import ast

from tests.support.paths import ROOT


def _is_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A protocol member (``...``) or a property setter: documented where it is declared."""
    body_is_ellipsis = (
        len(node.body) == 1
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and node.body[0].value.value is Ellipsis
    )
    setter = any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in node.decorator_list)
    return body_is_ellipsis or setter


def _undocumented(body: list[ast.stmt], prefix: str, path: str) -> list[str]:
    missing = []
    for node in body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name.startswith("_"):
            continue
        stub = not isinstance(node, ast.ClassDef) and _is_stub(node)
        if not stub and not ast.get_docstring(node):
            missing.append(f"{path}:{node.lineno} {prefix}{node.name}")
        if isinstance(node, ast.ClassDef):
            missing += _undocumented(node.body, f"{node.name}.", path)
    return missing


def test_public_classes_and_functions_have_docstrings() -> None:
    missing = []
    for path in sorted((ROOT / "taggram").rglob("*.py")):
        tree = ast.parse(path.read_text())
        missing += _undocumented(tree.body, "", str(path.relative_to(ROOT)))
    assert missing == []
