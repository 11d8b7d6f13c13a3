"""The import layers of docs/design.md, enforced: the table there is read, every module of
the project is placed in it, and every import it makes is one its layer allows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("crawler", "pipelines", "schema", "reports", "testnet")


def layer_table() -> dict[str, tuple[list[str], set[str], set[str]]]:
    """layer → (module paths and directories, layers it may import, modules it may import)."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text[text.index("## Layers") :]
    layers = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("layer", "---") or not cells[1].startswith("`"):
            continue
        name, modules, allowed = cells
        paths = re.findall(r"`([^`]+)`", modules)
        allowed_parts = [a.strip() for a in allowed.split(",") if a.strip()]
        layer_names = {a for a in allowed_parts if not a.startswith("`")}
        module_paths = {a.strip("`") for a in allowed_parts if a.startswith("`")}
        layers[name] = (paths, layer_names, module_paths)
    return layers


def layer_of(path: str, layers: dict) -> str | None:
    """The layer whose row names this file, the most specific entry winning."""
    best, length = None, -1
    for name, (paths, _, _) in layers.items():
        for entry in paths:
            if (path == entry or (entry.endswith("/") and path.startswith(entry))) and len(
                entry
            ) > length:
                best, length = name, len(entry)
    return best


def project_imports(source: str) -> set[str]:
    """The project modules a file imports at run time (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(source)
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from crawler import settings` imports the module crawler/settings.py
            names = [
                f"{node.module}.{alias.name}"
                if (ROOT / module_file(f"{node.module}.{alias.name}")).exists()
                else node.module
                for alias in node.names
            ]
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


def module_file(module: str) -> str:
    """`crawler.smtp.tls` → `crawler/smtp/tls.py` (or a package's `__init__.py`)."""
    path = module.replace(".", "/")
    return f"{path}/__init__.py" if (ROOT / path).is_dir() else f"{path}.py"


def project_files() -> list[str]:
    return sorted(
        str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
    )


def test_the_table_names_every_layer_it_allows():
    layers = layer_table()
    assert {"Scrapy", "reports", "pure logic", "storage", "vocabulary", "test network"} == set(
        layers
    )
    for _, allowed, modules in layers.values():
        assert allowed <= set(layers)
        assert all((ROOT / m).exists() for m in modules)


@pytest.mark.parametrize("path", project_files())
def test_each_module_imports_only_what_its_layer_allows(path):
    layers = layer_table()
    imports = project_imports((ROOT / path).read_text(encoding="utf-8"))
    layer = layer_of(path, layers)
    if layer is None:
        assert path.endswith("__init__.py") and not imports, f"{path}: no row in docs/design.md"
        return
    _, allowed, modules = layers[layer]
    for module in imports:
        target = module_file(module)
        target_layer = layer_of(target, layers)
        ok = target_layer in allowed | {layer} or target in modules
        assert ok, f"{path} ({layer}) imports {module} ({target_layer})"
