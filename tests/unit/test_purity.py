"""raybench.core stays pure: standard library, numpy and pydantic only (DESIGN.md, STYLE.md 1-2).

Every module under raybench/core is discovered (nothing is listed by hand), imported in a fresh
interpreter where ray, torch and the outer layers are unimportable, and its source is scanned for
imports anywhere in the file, including function-level imports and ``importlib.import_module``
calls with a literal name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import raybench.core

CORE = Path(raybench.core.__file__).parent
ALLOWED_THIRD_PARTY = {"numpy", "pydantic"}
FORBIDDEN = ("workloads", "reference_suts", "raybench.ray", "raybench.report")
BLOCKED = ("ray", "torch", "vllm", "diffusers", "ultralytics", "transformers", "workloads", "reference_suts",
           "raybench.ray", "raybench.report", "raybench.registry", "raybench.run", "yaml", "typer", "rich")


def core_modules() -> list[str]:
    out = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE.parent.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def imported_names(path: Path, pkg: str | None = None) -> list[tuple[int, str]]:
    """Every module name imported by ``path`` (made absolute; ``pkg`` is its package), with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = pkg or ".".join(path.relative_to(CORE.parent.parent).with_suffix("").parts[:-1])
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names.append((node.lineno, base))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append((node.lineno, node.args[0].value))
    return names


def test_core_modules_are_discovered() -> None:
    mods = core_modules()
    assert "raybench.core.loadgen" in mods and "raybench.core.scenarios.server" in mods
    assert len(mods) >= 20


def test_core_imports_only_stdlib_numpy_pydantic() -> None:
    bad = []
    for path in sorted(CORE.rglob("*.py")):
        for line, name in imported_names(path):
            top = name.split(".")[0]
            if name.startswith(FORBIDDEN) or (top != "raybench" and top not in ALLOWED_THIRD_PARTY
                                              and top not in sys.stdlib_module_names and top != "__future__"):
                bad.append(f"{path.relative_to(CORE.parent.parent)}:{line}: {name}")
            elif top == "raybench" and name not in ("raybench",) and not name.startswith("raybench.core"):
                bad.append(f"{path.relative_to(CORE.parent.parent)}:{line}: {name}")
    assert bad == []


def test_imported_names_sees_dynamic_imports(tmp_path: Path) -> None:
    mod = tmp_path / "probe.py"
    mod.write_text("def f():\n    import workloads.yolo11\n    import importlib\n    importlib.import_module('raybench.ray')\n"
                   "    from ..report import html\n")
    names = [n for _, n in imported_names(mod, "raybench.core")]
    assert sorted(names) == ["importlib", "raybench.ray", "raybench.report", "workloads.yolo11"]


def test_every_core_module_imports_with_outer_layers_blocked() -> None:
    code = (
        "import sys, importlib\n"
        f"for m in {BLOCKED!r}:\n    sys.modules[m] = None\n"
        f"for m in {core_modules()!r}:\n    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_list_runs_without_optional_dependencies() -> None:
    code = (
        "import sys\n"
        "for m in ('ray', 'torch', 'vllm', 'diffusers', 'ultralytics', 'transformers', 'pycocotools', 'httpx', 'aiohttp'):\n"
        "    sys.modules[m] = None\n"
        "from raybench.registry import list_workloads, list_suts\n"
        "print(sorted(list_workloads())); print(sorted(list_suts()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "'synthetic'" in out.stdout and "'fake'" in out.stdout and "'null'" in out.stdout
