"""Prints the package-level import graph of the repository: ``from -> to  count``.

    .venv/bin/python scripts/import_graph.py            # this checkout
    .venv/bin/python scripts/import_graph.py /tmp/old   # another tree (e.g. a git worktree)
    .venv/bin/python scripts/import_graph.py --exclude speech_platform/bench  # leave files out

An edge counts every import of package ``to`` written in a module of package ``from``, at
any depth: top-level, inside functions (counted again in parentheses, since those are the
ones that hide a cycle), under ``if TYPE_CHECKING``, and ``importlib.import_module("...")``
or ``__import__("...")`` with a literal name. A string constant that is exactly a dotted
module path of the tree (``"stt_service.service"``) counts too: that is how a module names
another for a later ``importlib`` call. Only the repository's own top-level packages
appear; the generated ``speech`` stubs are left out (everything imports the contract).

tests/platform/test_layers.py uses the same walk (``module_imports``) to hold the layers.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Directories never walked (generated code, environments, caches).
_SKIP = {".venv", ".git", "build", "dist", "__pycache__", "node_modules", "speech"}
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class Import:
    """One import found in a module: the module named, and where it was written."""

    target: str
    line: int
    #: "top" (module level), "function" (inside a def), or "string" (importlib or a literal).
    how: str


def packages(root: Path) -> list[str]:
    """The repository's own top-level packages (directories with an ``__init__.py``)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in _SKIP and (p / "__init__.py").is_file()
    )


def python_files(package_dir: Path) -> Iterator[Path]:
    for path in sorted(package_dir.rglob("*.py")):
        if not _SKIP.intersection(path.relative_to(package_dir).parts):
            yield path


def module_imports(path: Path, package: str | None = None) -> list[Import]:
    """Every module ``path`` imports, at any depth (relative imports resolved when
    ``package``, the dotted name of the module's package, is given)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    named: set[int] = set()  # string arguments already counted as an import call

    def visit(node: ast.AST, in_function: bool) -> None:
        how = "function" if in_function else "top"
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, how) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and package is not None:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            if base:
                found.append(Import(base, node.lineno, how))
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(Import(first.value, node.lineno, "string"))
                named.add(id(first))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _DOTTED.match(node.value)
            and id(node) not in named
        ):
            found.append(Import(node.value, node.lineno, "string"))
        nested = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    visit(tree, False)
    return found


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def dotted_package(root: Path, path: Path) -> str:
    """``stt_service/streaming/rpc.py`` -> ``stt_service.streaming`` (the module's package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts if parts[-1] == "__init__" else parts[:-1]).removesuffix(".__init__")


def edges(
    root: Path, exclude: tuple[str, ...] = ()
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(all imports, those inside functions) per (from package, to package); files whose
    path below ``root`` starts with one of ``exclude`` are left out."""
    own = set(packages(root))
    every: Counter[tuple[str, str]] = Counter()
    in_functions: Counter[tuple[str, str]] = Counter()
    for package in sorted(own):
        for path in python_files(root / package):
            if exclude and path.relative_to(root).as_posix().startswith(exclude):
                continue
            for imp in module_imports(path, dotted_package(root, path)):
                target = imp.target.split(".")[0]
                if target == package or target not in own:
                    continue
                if imp.how == "string" and imp.target.count(".") == 0:
                    continue
                every[(package, target)] += 1
                if imp.how != "top":
                    in_functions[(package, target)] += 1
    return every, in_functions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--exclude", action="append", default=[], metavar="PATH_PREFIX")
    args = parser.parse_args(argv)
    every, in_functions = edges(Path(args.root).resolve(), tuple(args.exclude))
    width = max((len(a) + len(b) for a, b in every), default=0) + 4
    for (source, target), count in sorted(every.items()):
        late = in_functions[(source, target)]
        note = f"  ({late} inside functions or by string)" if late else ""
        print(f"{source} -> {target}".ljust(width), f"{count:4d}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
