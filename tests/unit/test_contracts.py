"""SUTs and workloads meet only through ``workloads/<x>/payload.py`` and the registry.

A SUT (any module under ``reference_suts/``, its tests included) may import ``workloads.<x>.payload``
and nothing else of a workload: the sample library comes from ``raybench.registry.make_library``.
The check parses the sources (ast), so it needs none of the SUTs' heavy dependencies.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LOADERS = {"import_module", "load_object", "__import__"}


def _allowed(target: str) -> bool:
    """``workloads.<x>.payload`` (or something inside it); anything else under ``workloads`` is not."""
    parts = target.split(".")
    return parts[0] != "workloads" or (len(parts) >= 3 and parts[2].split(":")[0] == "payload")


def workload_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, target)`` of every import of ``workloads...`` in a source file that is not a payload."""
    bad: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from workloads.x import payload` names a module, `from workloads.x.payload import f` a name
            targets = [
                f"{node.module}.{a.name}" if node.module.count(".") < 2 else node.module for a in node.names
            ]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in _LOADERS and node.args and isinstance(node.args[0], ast.Constant):
                targets = [str(node.args[0].value)]
        bad += [(node.lineno, t) for t in targets if not _allowed(t)]
    return bad


def test_rule_itself() -> None:
    assert _allowed("workloads.yolo11.payload") and _allowed("workloads.wan22.payload.encode_mp4")
    assert _allowed("numpy") and _allowed("raybench.registry")
    for bad in (
        "workloads",
        "workloads.yolo11",
        "workloads.yolo11.accuracy",
        "workloads.dlrmv3.dataset:load_library",
    ):
        assert not _allowed(bad), bad


def test_reference_suts_import_only_workload_payloads(tmp_path: Path) -> None:
    files = sorted((ROOT / "reference_suts").rglob("*.py"))
    assert len(files) > 20
    found = {str(f.relative_to(ROOT)): bad for f in files if (bad := workload_imports(f))}
    assert found == {}, "SUTs may import only workloads.<x>.payload (use raybench.registry for the library)"
    # the checker does see each kind of import
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import workloads.yolo11.dataset\n"
        "from workloads.yolo11 import accuracy, payload\n"
        "from workloads.dlrmv3.accuracy import score\n"
        "from workloads.dlrmv3.payload import encode_payload\n"
        "import importlib\n"
        "importlib.import_module('workloads.qwen3_vl.dataset')\n"
        "import raybench.core.spec as s\n"
        "s.load_object('workloads.wan22.dataset:load_library')\n"
    )
    assert [t for _, t in workload_imports(probe)] == [
        "workloads.yolo11.dataset", "workloads.yolo11.accuracy", "workloads.dlrmv3.accuracy",
        "workloads.qwen3_vl.dataset", "workloads.wan22.dataset:load_library",
    ]  # fmt: skip


def test_payload_and_params_modules_are_light() -> None:
    """``params.py`` needs only pydantic (``raybench list`` imports it); ``payload.py`` at most numpy."""
    code = (
        "import sys, importlib, pathlib\n"
        "for m in ('numpy', 'ray', 'torch', 'cv2', 'pycocotools', 'transformers', 'httpx', 'aiohttp'):\n"
        "    sys.modules[m] = None\n"
        "from raybench.registry import broken_suts, broken_workloads, list_suts, list_workloads\n"
        "specs = [*list_workloads().values(), *list_suts().values()]\n"
        "assert not broken_workloads() and not broken_suts(), (broken_workloads(), broken_suts())\n"
        "for s in specs:\n"
        "    assert isinstance(s.params, dict), s.name\n"
        "root = pathlib.Path('.')\n"
        "for p in sorted([*root.glob('workloads/*/params.py'), *root.glob('reference_suts/*/params.py'),\n"
        "                 *root.glob('workloads/*/payload.py')]):\n"
        "    if p.name == 'payload.py':\n"
        "        sys.modules.pop('numpy', None)\n"
        "    importlib.import_module('.'.join(p.with_suffix('').parts))\n"
        "print(len(specs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 15
