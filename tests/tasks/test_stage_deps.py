"""Each DVC stage's deps cover the project files its command imports (tasks/stage_deps.py)."""

import textwrap
from pathlib import Path

from tasks import stage_deps
from tests import REPO


def test_stage_deps_cover_imports():
    missing = {name: files for name, files in stage_deps.missing_deps(REPO).items() if files}
    assert not missing, "\n".join(stage_deps.advice(name, files) for name, files in missing.items())


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def test_imports_followed_through_functions_relative_and_registries(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/main.py": """
                from typing import TYPE_CHECKING
                import numpy
                from . import sibling
                from pkg import sub

                if TYPE_CHECKING:
                    from pkg import typing_only

                def run():
                    from pkg.sub.deep import f
                """,
            "pkg/sibling.py": "from .registry import load\n",
            "pkg/registry.py": """
                import importlib
                TABLE = {"a": "pkg.plugins", "b": "not.a.project.module"}
                def load(k):
                    return importlib.import_module(TABLE[k] + ".impl")
                """,
            "pkg/plugins/__init__.py": "",
            "pkg/plugins/impl.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/deep.py": "from ..leaf import x\n",
            "pkg/leaf.py": "",
            "pkg/typing_only.py": "",
            "pkg/unused.py": "",
        },
    )
    entries = stage_deps.command_entries(tmp_path, "python -m pkg.main --flag x && echo done", tmp_path)
    files = stage_deps.imported_files(tmp_path, entries)
    got = sorted(f.relative_to(tmp_path).as_posix() for f in files)
    # function-level (sub/deep.py), relative two levels up (leaf.py), a registry's package (plugins/*);
    # neither numpy, nor a TYPE_CHECKING import, nor a file nobody imports
    assert got == [
        "pkg/__init__.py",
        "pkg/leaf.py",
        "pkg/main.py",
        "pkg/plugins/__init__.py",
        "pkg/plugins/impl.py",
        "pkg/registry.py",
        "pkg/sibling.py",
        "pkg/sub/__init__.py",
        "pkg/sub/deep.py",
    ]
    deps = [tmp_path / "pkg/main.py", tmp_path / "pkg/sub", tmp_path / "pkg/__init__.py"]
    left = [f.relative_to(tmp_path).as_posix() for f in stage_deps.uncovered(files, deps)]
    assert left == [
        "pkg/leaf.py",
        "pkg/plugins/__init__.py",
        "pkg/plugins/impl.py",
        "pkg/registry.py",
        "pkg/sibling.py",
    ]


def test_foreach_stages_resolved_by_dvc(tmp_path):
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import common\n",
            "pkg/b.py": "",
            "pkg/common.py": "",
            "dvc.yaml": """
                vars:
                  - entry: pkg
                stages:
                  run:
                    foreach: [a, b]
                    do:
                      cmd: python -m ${entry}.${item}
                      deps:
                        - pkg/__init__.py
                        - pkg/${item}.py
                """,
        },
    )
    assert stage_deps.missing_deps(tmp_path) == {"run@a": ["pkg/common.py"], "run@b": []}
