"""The product code's import structure, checked from the source with :mod:`ast` (nothing is
imported or executed).

Product code is every ``.py`` under ``flight/``, ``sim_hw/`` and ``tools/`` (a ``tools/x.py``
script is the module ``tools.x``). Every ``import`` and ``from ... import`` counts wherever
it stands: at module level, inside a function or method, under ``if TYPE_CHECKING`` or in a
``try``. A deferred import is still a dependency; moving an import into a function to dodge
a cycle hides the cycle without removing it, so it counts the same. Relative imports are
resolved against the importing module's package. ``from pkg import name`` depends on the
submodule ``pkg.name`` when there is one, else on ``pkg``. Importing a package does not add
an edge to its parents' ``__init__`` (Python runs them, but none of ours holds code that
imports back).

The rules (the developers' guide, issue 11 "Done when"):

* no import cycle among product modules: every strongly connected component of the import
  graph with more than one module is reported, with each import that closes it;
* no ``_private`` name of another product module: ``from x import _y`` and ``x._y`` where
  ``x`` is a product module bound by an import in that file (dunder names are public). A
  module's own private names, and private names of the standard library or third parties
  (``os._exit``), are not this rule's business;
* ``flight/`` imports nothing of ``sim_hw/``;
* ``sim_hw/`` imports of ``flight/`` only ``flight.core`` and ``flight.hal`` (the simulator is
  the rig on the far side of the HAL, not part of the flight software);
* ``tools/`` imports nothing of ``tests/``.

Each message names the file, the line and the import as written.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("flight", "sim_hw", "tools")
SIM_MAY_IMPORT = ("flight.core", "flight.hal")


def module_name(root: Path, path: Path) -> str:
    """``flight/core/bus.py`` -> ``flight.core.bus``; ``flight/core/__init__.py`` -> ``flight.core``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class Import:
    """One dependency: ``src`` imports ``dst`` at ``path``:``line`` with the statement ``text``."""

    src: str
    dst: str
    path: str
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


@dataclass
class Graph:
    """The product modules, their imports and the private names they reach into."""

    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)
    private: list[str] = field(default_factory=list)

    def add(self, imp: Import) -> None:
        """Record ``imp`` once (``from x import a, b`` depends on ``x`` once)."""
        if imp not in self._seen:
            self._seen.add(imp)
            self.imports.append(imp)

    _seen: set[Import] = field(default_factory=set, repr=False)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but a chain of names."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else head + [node.attr]
    return None


def scan(root: Path, dirs: tuple[str, ...] = PRODUCT_DIRS) -> Graph:
    """Parse every product module under ``root`` and collect its imports."""
    g = Graph()
    for d in dirs:
        for path in sorted((root / d).rglob("*.py")) if (root / d).is_dir() else ():
            g.modules[module_name(root, path)] = path
    for module, path in g.modules.items():
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        is_package = path.name == "__init__.py"
        bound: dict[str, str] = {}  # local name -> the product module it is bound to, by any import in the file
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                text = ast.unparse(node)
                for alias in node.names:
                    g.add(Import(module, alias.name, rel, node.lineno, text))
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                text = ast.unparse(node)
                src = _absolute(module, is_package, node)
                for alias in node.names:
                    sub = f"{src}.{alias.name}"
                    g.add(Import(module, sub if sub in g.modules else src, rel, node.lineno, text))
                    if sub in g.modules:
                        bound[alias.asname or alias.name] = sub
                    if is_private(alias.name) and src != module and (src in g.modules or sub in g.modules):
                        g.private.append(f"{rel}:{node.lineno}: {text}  ({alias.name} is private to {src})")
        for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Attribute)), key=lambda n: n.lineno):
            if is_private(node.attr):
                chain = _dotted(node.value)
                if chain is None or chain[0] not in bound:
                    continue
                target = ".".join([bound[chain[0]], *chain[1:]])
                if target in g.modules and target != module:
                    g.private.append(f"{rel}:{node.lineno}: {ast.unparse(node)}  ({node.attr} is private to {target})")
    return g


def cycles(g: Graph) -> list[list[Import]]:
    """Each import cycle (a strongly connected component of more than one product module) as
    the imports between its members, sorted; Tarjan's algorithm, iterative."""
    edges: dict[str, set[str]] = {m: set() for m in g.modules}
    for imp in g.imports:
        if imp.dst in g.modules and imp.dst != imp.src:
            edges[imp.src].add(imp.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    members.add(m)
                    if m == node:
                        break
                if len(members) > 1:
                    components.append(members)
    return sorted((sorted((i for i in g.imports if i.src in c and i.dst in c and i.src != i.dst),
                          key=lambda i: (i.path, i.line)) for c in components), key=lambda c: c[0].path)


def layer_violations(g: Graph) -> list[str]:
    """Imports across the layers' fixed directions."""
    out = []
    for imp in sorted(g.imports, key=lambda i: (i.path, i.line)):
        if within(imp.src, "flight") and within(imp.dst, "sim_hw"):
            out.append(f"{imp.where()}  (flight/ must not import sim_hw/)")
        elif (within(imp.src, "sim_hw") and within(imp.dst, "flight")
              and not any(within(imp.dst, allowed) for allowed in SIM_MAY_IMPORT)):
            out.append(f"{imp.where()}  (sim_hw/ may import only {' and '.join(SIM_MAY_IMPORT)} of flight/)")
        elif within(imp.src, "tools") and within(imp.dst, "tests"):
            out.append(f"{imp.where()}  (tools/ must not import tests/)")
    return out


def describe_cycle(cycle: list[Import]) -> str:
    members = sorted({i.src for i in cycle})
    return f"import cycle among {', '.join(members)}:\n" + "\n".join(f"    {i.where()}" for i in cycle)


def report(g: Graph) -> dict[str, list[str]]:
    """Every violation, by rule."""
    return {"import cycles": [describe_cycle(c) for c in cycles(g)],
            "private names imported from another module": g.private,
            "layer rules": layer_violations(g)}


@pytest.fixture(scope="module")
def product() -> Graph:
    return scan(ROOT)


def test_the_scan_sees_the_product_code(product):
    assert {"flight.core.component", "flight.hal.bridge", "sim_hw.satellite", "tools.bench_bus"} <= set(product.modules)
    assert any(i.src == "flight.report" and i.dst == "flight.core.messages" for i in product.imports)


def test_no_import_cycles(product):
    found = [describe_cycle(c) for c in cycles(product)]
    assert not found, f"{len(found)} import cycle(s):\n" + "\n".join(found)


def test_no_private_names_imported_from_another_module(product):
    assert not product.private, f"{len(product.private)} private name(s) reached from another module:\n" + \
        "\n".join(product.private)


def test_layers_import_only_downwards(product):
    found = layer_violations(product)
    assert not found, f"{len(found)} import(s) across layers:\n" + "\n".join(found)


# -- the checker itself, on a synthetic tree --------------------------------------------------
SYNTHETIC = {
    "flight/__init__.py": "",
    "flight/a.py": "from flight import b\n_SECRET = 1\n",
    "flight/b.py": "def f():\n    from flight.a import _SECRET\n    return _SECRET\n",
    "flight/c.py": "import flight.a as fa\nimport flight.b\n\n\ndef g():\n    return fa._SECRET + flight.b.__name__\n",
    "flight/d.py": "from .a import __doc__ as doc\nimport sim_hw.model\n",
    "flight/core/__init__.py": "",
    "flight/core/e.py": "from os import _exit\n",
    "flight/hal/__init__.py": "",
    "sim_hw/__init__.py": "",
    "sim_hw/model.py": "from flight.core import e\nfrom flight.hal import __name__ as n\nfrom flight import c\n",
    "tools/bench.py": "import json\n\n\ndef main():\n    from tests.helpers import thing\n",
    "tests/__init__.py": "",
    "tests/helpers.py": "thing = 1\n",
}


@pytest.fixture
def synthetic(tmp_path) -> Graph:
    for rel, text in SYNTHETIC.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return scan(tmp_path)


def test_the_checker_catches_a_cycle_through_a_function_level_import(synthetic):
    (cycle,) = cycles(synthetic)
    assert [i.where() for i in cycle] == ["flight/a.py:1: from flight import b",
                                          "flight/b.py:2: from flight.a import _SECRET"]


def test_the_checker_catches_private_names_by_import_and_by_attribute(synthetic):
    assert synthetic.private == [
        "flight/b.py:2: from flight.a import _SECRET  (_SECRET is private to flight.a)",
        "flight/c.py:6: fa._SECRET  (_SECRET is private to flight.a)",
    ], "a dunder, a module's own names and the standard library's private names are not flagged"


def test_the_checker_catches_imports_across_layers(synthetic):
    assert layer_violations(synthetic) == [
        "flight/d.py:2: import sim_hw.model  (flight/ must not import sim_hw/)",
        "sim_hw/model.py:3: from flight import c  (sim_hw/ may import only flight.core and flight.hal of flight/)",
        "tools/bench.py:5: from tests.helpers import thing  (tools/ must not import tests/)",
    ]


def test_the_checker_passes_a_clean_tree(tmp_path):
    for rel, text in {"flight/__init__.py": "", "flight/a.py": "import os\nX = os.sep\n",
                      "flight/b.py": "from flight.a import X\n", "flight/core/__init__.py": "",
                      "flight/core/k.py": "from flight.core import __name__ as n\nK = 1\n",
                      "sim_hw/__init__.py": "", "sim_hw/s.py": "from flight.core.k import K\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = scan(tmp_path)  # no tools/ at all
    assert len(g.modules) == 7 and not cycles(g) and not g.private and not layer_violations(g)


if __name__ == "__main__":  # the full list of violations, by rule, for whoever fixes them
    for rule, lines in report(scan(ROOT)).items():
        print(f"== {rule}: {len(lines)}")
        print("\n".join(lines))
