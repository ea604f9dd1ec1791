"""Which project source files each DVC stage's command imports, and which of them its ``deps`` miss.

DVC reruns a stage only when one of its ``deps`` changed, and hand-listed code deps drift: a stage
that starts importing ``asr_core/lm`` keeps its old outputs after an edit there. This module reads
the imports statically (``ast``, nothing is executed, so no torch start-up) from the module a stage
runs (``python -m tasks.evaluate ...``), follows them through the project's own files, and compares
the result with the stage's deps as DVC resolves them (``foreach``/``matrix`` items, ``${vars}``).
Usage::

    python -m tasks.stage_deps        # prints each stage's missing deps; exit 1 if any
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DYNAMIC_IMPORTS = {"import_module", "__import__"}
_TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")


@dataclass(frozen=True)
class Stage:
    """One resolved DVC stage: ``name`` as DVC addresses it (``train@quartznet`` for a foreach item)."""

    name: str
    cmd: str | list[str]  # DVC takes a list of commands too
    wdir: Path
    deps: list[Path]


def module_file(root: Path, name: str) -> Path | None:
    """The file of module ``name`` if it is a project file (``a/b.py`` or ``a/b/__init__.py``), else None."""
    parts = name.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    base = root.joinpath(*parts)
    # A package wins over a module of the same name, as in Python's own finder.
    return next((f for f in (base / "__init__.py", base.with_suffix(".py")) if f.is_file()), None)


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` minus ``if TYPE_CHECKING:`` bodies: those imports never run, so they are not deps."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and ast.unparse(child.test) in _TYPE_CHECKING:
            yield from (n for sub in child.orelse for n in (sub, *_walk_runtime(sub)))
        else:
            yield child
            yield from _walk_runtime(child)


def _imported_names(path: Path, module: str) -> tuple[set[str], set[str]]:
    """``(names, dynamic)`` that ``path`` (module ``module``) imports, at any depth of the file.

    ``names`` holds every ``import a.b`` and ``from a import b`` target, the latter both as ``a``
    and ``a.b`` since ``b`` may be a submodule. Registries import by a name held in a table
    (``importlib.import_module(module)``), so in a file that calls ``import_module``/``__import__``
    every string constant is returned in ``dynamic``: the caller keeps those naming project modules.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    strings: set[str] = set()
    calls_dynamic = False
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                if node.level > len(anchor):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join([*anchor[: len(anchor) - node.level + 1], *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call):
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            calls_dynamic |= callee in _DYNAMIC_IMPORTS
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
    return names, strings if calls_dynamic else set()


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files_of(root: Path, name: str, whole_package: bool = False) -> set[Path]:
    """Project files that importing ``name`` runs: each existing parent package's ``__init__.py`` and
    the module itself; with ``whole_package`` a package brings every module under it, because a
    registry naming a package imports submodules built from that name (``f"{package}.evaluate"``)."""
    parts = name.split(".")
    files = {f for i in range(1, len(parts) + 1) if (f := module_file(root, ".".join(parts[:i])))}
    target = module_file(root, name)
    if whole_package and target is not None and target.name == "__init__.py":
        files.update(target.parent.rglob("*.py"))
    return files


def imported_files(root: Path, entries: Iterable[Path]) -> set[Path]:
    """Every project file that running ``entries`` imports, transitively (the entries included)."""
    root = root.resolve()
    seen: set[Path] = set()
    todo = [e.resolve() for e in entries]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        names, dynamic = _imported_names(path, _module_name(root, path))
        found = set().union(*(_files_of(root, n) for n in names))
        found |= set().union(*(_files_of(root, s, whole_package=True) for s in dynamic if module_file(root, s)))
        todo.extend(found - seen)
    return seen


def command_entries(root: Path, cmd: str, wdir: Path) -> set[Path]:
    """Project files a shell command runs with Python: ``python [-u ...] -m pkg.mod`` (with its
    packages' ``__init__.py``) or ``python script.py``; other commands and third-party modules give none."""
    tokens = shlex.split(cmd)
    entries: set[Path] = set()
    for i in (i for i, tok in enumerate(tokens) if _PYTHON.fullmatch(Path(tok).name)):
        j = i + 1
        while j < len(tokens) and tokens[j].startswith("-") and tokens[j] != "-m":
            j += 2 if tokens[j] in ("-W", "-X") else 1  # interpreter options; these two take a value
        if tokens[j : j + 1] == ["-m"] and j + 1 < len(tokens):
            entries |= _files_of(root, tokens[j + 1])
        elif j < len(tokens) and tokens[j].endswith(".py") and (wdir / tokens[j]).is_file():
            entries.add((wdir / tokens[j]).resolve())
    return entries


def uncovered(files: Iterable[Path], deps: Iterable[Path]) -> list[Path]:
    """``files`` that no dep covers; a dep covers a file if it is that file or a folder above it."""
    deps = [d.resolve() for d in deps]
    return sorted(f for f in files if not any(f == d or d in f.parents for d in deps))


def dvc_stages(root: Path) -> list[Stage]:
    """The stages with a command, as DVC itself resolves them (``foreach``/``matrix``, ``${vars}``)."""
    from dvc.repo import Repo

    def name(stage: Any) -> str:
        # DVC's own addressing (``sub/dvc.yaml:train@a``), but relative to the repo, not the cwd.
        where, own = stage.path_in_repo, getattr(stage, "name", None)
        return where if own is None else own if where == "dvc.yaml" else f"{where}:{own}"

    with Repo(str(root)) as repo:
        return [
            Stage(name(s), s.cmd, Path(s.wdir), [Path(d.fs_path) for d in s.deps]) for s in repo.index.stages if s.cmd
        ]


def missing_deps(root: Path) -> dict[str, list[str]]:
    """``{stage: [root-relative files its command imports that its deps miss]}`` for every stage."""
    root = root.resolve()
    out: dict[str, list[str]] = {}
    for stage in dvc_stages(root):
        cmds = [stage.cmd] if isinstance(stage.cmd, str) else stage.cmd
        entries = set().union(*(command_entries(root, c, stage.wdir) for c in cmds))
        files = imported_files(root, entries)
        out[stage.name] = [f.relative_to(root).as_posix() for f in uncovered(files, stage.deps)]
    return out


def advice(stage: str, files: list[str]) -> str:
    """What to add to dvc.yaml for ``stage``; a foreach/matrix item (``train@a``) is declared under its
    definition's key (``train``), a stage of another file (``sub/dvc.yaml:x``) in that file."""
    where, _, key = stage.rpartition(":")
    head = f"stage {stage}: its command imports files its deps miss; add under stages.{key.split('@')[0]}.deps"
    return f"{head} of {where or 'dvc.yaml'} (or a folder above them):\n" + "\n".join(f"      - {f}" for f in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: .)")
    bad = {name: files for name, files in missing_deps(parser.parse_args(argv).root).items() if files}
    for name, files in bad.items():
        print(advice(name, files))
    if not bad:
        print("every stage's deps cover the project files its command imports")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
