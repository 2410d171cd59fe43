"""A static check that views, API views and tasks reach tenant rows only through selectors.

Inside ``views.py``, ``api.py`` and ``tasks.py`` (and ``*_views.py``, ``*_api.py``,
``*_tasks.py``) it reports any use of a tenant
model's managers (``Campaign.objects…``), the unscoped escape hatch, raw SQL,
and ``get_object_or_404(TenantModel, …)``: those files must call
``access_*``/``*_list`` selectors or services, which take the account.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Feature modules count too: accounts/team_views.py is as much a views module as views.py.
GUARDED_FILE_PATTERNS = ("views.py", "*_views.py", "api.py", "*_api.py", "tasks.py", "*_tasks.py")
MANAGER_ATTRIBUTES = {"objects", "objects_unscoped_dangerous", "_default_manager", "_base_manager"}
ALWAYS_FORBIDDEN_ATTRIBUTES = {"objects_unscoped_dangerous", "raw", "extra"}
SHORTCUTS = {"get_object_or_404", "get_list_or_404"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def find_unscoped_queries(source: str, tenant_models: set[str], path: str = "<source>") -> list[Violation]:
    violations = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Attribute):
            if node.attr in ALWAYS_FORBIDDEN_ATTRIBUTES:
                violations.append(Violation(path, node.lineno, f"`.{node.attr}` bypasses the tenant scope"))
            elif (
                node.attr in MANAGER_ATTRIBUTES and isinstance(node.value, ast.Name) and node.value.id in tenant_models
            ):
                violations.append(
                    Violation(path, node.lineno, f"`{node.value.id}.{node.attr}`: go through an access_* selector")
                )
            elif node.attr == "cursor" and isinstance(node.value, ast.Name) and node.value.id == "connection":
                violations.append(Violation(path, node.lineno, "raw SQL through connection.cursor()"))
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in SHORTCUTS and node.args and isinstance(node.args[0], ast.Name):
                if node.args[0].id in tenant_models:
                    violations.append(
                        Violation(path, node.lineno, f"{name}({node.args[0].id}, …): use an access_* selector")
                    )
    return violations


def guarded_files(root: Path, apps: list[str]) -> list[Path]:
    found = {path for app in apps for pattern in GUARDED_FILE_PATTERNS for path in (root / app).glob(pattern)}
    return sorted(found)


def scan_project(root: Path, apps: list[str], tenant_models: set[str]) -> list[Violation]:
    violations = []
    for path in guarded_files(root, apps):
        violations += find_unscoped_queries(
            path.read_text(encoding="utf-8"), tenant_models, str(path.relative_to(root))
        )
    return violations
