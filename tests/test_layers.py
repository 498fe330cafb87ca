"""The direction of imports (issue 19, part 4): who may import whom.

    spheron_web (the roof: settings, urls, the API)
      demo
        marketplace → providers → billing → chain → accounts → core (the floor)

A module may import its own package and any package below it, never one above. `core` imports
no app and not `spheron_web`. Imports inside functions count the same as top-level ones. An API
module (`api.py` or `*_api.py`) never imports a views module. No two modules import each other
(a task module is imported by Celery only: services queue tasks by name).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top: a package may import the ones before it in this list, and itself.
LAYERS = ("core", "accounts", "chain", "billing", "providers", "marketplace", "demo", "spheron_web")
RANK = {name: rank for rank, name in enumerate(LAYERS)}

# Upward imports that exist today, as (importing module, imported module). To be removed by
# issue 19 part 1–3; do not add to this list: a new upward import is a design bug to fix.
# (None today between the apps: the hooks already point down.)
KNOWN_UPWARD_IMPORTS: frozenset[tuple[str, str]] = frozenset()

# API modules that import a views module, as (API module, views module). None: the shared reads
# are in selectors (marketplace.deployments.selectors); do not add to it.
KNOWN_API_IMPORTS_OF_VIEWS: frozenset[tuple[str, str]] = frozenset()

# Pairs of modules that import each other today (at module or function level), each pair sorted.
# To be removed; do not add to it: break the circle (move the shared part down, or queue by name).
KNOWN_MUTUAL_IMPORTS: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (functions, classes, `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import mod` imports pkg.mod when mod is a module.
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def _upward_imports() -> set[tuple[str, str]]:
    upward: set[tuple[str, str]] = set()
    for package in LAYERS:
        for path in _python_files(package):
            importer = _module_name(path)
            for imported in _imported_modules(path):
                top = imported.split(".")[0]
                if top in RANK and RANK[top] > RANK[package]:
                    upward.add((importer, _existing_module(imported)))
    return upward


def _existing_module(dotted: str) -> str:
    """`from billing.services import hold_swap` → `billing.services` (the module, not the name)."""
    parts = dotted.split(".")
    while parts:
        base = ROOT.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return dotted


def test_the_layers_are_the_project_packages():
    assert all((ROOT / name / "__init__.py").is_file() for name in LAYERS)


@pytest.mark.parametrize("path", _python_files("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_app_and_not_the_project_package(path: Path):
    above = sorted(name for name in _imported_modules(path) if name.split(".")[0] in LAYERS[1:])
    assert above == [], f"{path.relative_to(ROOT)} is the floor: it must not import {above}"


def test_no_new_upward_import_between_apps():
    new = sorted(_upward_imports() - KNOWN_UPWARD_IMPORTS)
    assert new == [], (
        "These modules import a package above their own "
        f"({' → '.join(reversed(LAYERS))}, each may import only what is to its right): {new}"
    )


def test_the_allow_list_of_upward_imports_holds_only_imports_that_still_exist():
    gone = sorted(KNOWN_UPWARD_IMPORTS - _upward_imports())
    assert gone == [], f"Fixed, so take them off KNOWN_UPWARD_IMPORTS: {gone}"


def _is_api_module(path: Path) -> bool:
    return path.stem == "api" or path.stem.endswith("_api") or "api" in path.relative_to(ROOT).parts[1:-1]


def _is_views_module(name: str) -> bool:
    return any(part == "views" or part.endswith("_views") for part in name.split(".")[1:])


def _api_imports_of_views() -> set[tuple[str, str]]:
    return {
        (_module_name(path), _existing_module(imported))
        for package in LAYERS
        for path in _python_files(package)
        if _is_api_module(path)
        for imported in _imported_modules(path)
        if _is_views_module(_existing_module(imported))
    }


def test_no_new_api_module_imports_a_views_module():
    new = sorted(_api_imports_of_views() - KNOWN_API_IMPORTS_OF_VIEWS)
    assert new == [], f"An API module must not import page views: {new}"


def test_the_allow_list_of_api_imports_of_views_holds_only_imports_that_still_exist():
    gone = sorted(KNOWN_API_IMPORTS_OF_VIEWS - _api_imports_of_views())
    assert gone == [], f"Fixed, so take them off KNOWN_API_IMPORTS_OF_VIEWS: {gone}"


def test_the_checks_catch_function_level_relative_and_view_imports(tmp_path, monkeypatch):
    files = {
        "core/__init__.py": "",
        "core/errors.py": "",
        "core/sample.py": (
            "def late():\n    from marketplace import deployments\n    import billing.services\n"
            "from .errors import ApplicationError\n"
        ),
        "billing/__init__.py": "",
        "billing/services.py": "from accounts.models import User\n",
        "providers/__init__.py": "",
        "providers/api.py": "def handler():\n    from providers.views import page\n",
        "providers/views.py": "",
        "marketplace/__init__.py": "",
        "marketplace/deployments.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)

    imported = _imported_modules(tmp_path / "core/sample.py")
    assert {"marketplace", "marketplace.deployments", "billing.services", "core.errors"} <= imported
    assert _upward_imports() == {
        ("core.sample", "marketplace"),
        ("core.sample", "marketplace.deployments"),
        ("core.sample", "billing.services"),
    }
    assert _api_imports_of_views() == {("providers.api", "providers.views")}


def _mutual_imports() -> set[tuple[str, str]]:
    imports = {
        _module_name(path): {_existing_module(name) for name in _imported_modules(path)}
        for package in LAYERS
        for path in _python_files(package)
    }
    return {(a, b) for a, targets in imports.items() for b in targets if a < b and a in imports.get(b, ())}


def test_no_two_modules_import_each_other():
    new = sorted(_mutual_imports() - KNOWN_MUTUAL_IMPORTS)
    assert new == [], f"These modules import each other (a function-level import counts too): {new}"


def test_the_allow_list_of_mutual_imports_holds_only_pairs_that_still_exist():
    gone = sorted(KNOWN_MUTUAL_IMPORTS - _mutual_imports())
    assert gone == [], f"Fixed, so take them off KNOWN_MUTUAL_IMPORTS: {gone}"


def test_the_circle_check_catches_a_function_level_import_back(tmp_path, monkeypatch):
    files = {
        "marketplace/__init__.py": "",
        "marketplace/tasks.py": "from marketplace.services import run\n",
        "marketplace/services.py": "def run():\n    from marketplace import tasks\n",
        "marketplace/views.py": "from marketplace.services import run\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)

    assert _mutual_imports() == {("marketplace.services", "marketplace.tasks")}
