"""The package's layers as its folders draw them: the library (model, data, training and the helpers at the top)
never imports the trainer or a tool, the model needs nothing but itself and the helpers, and no module of the
package or of experiments/ imports itself back through others. Imports are read from the source (every import,
also those inside functions), so a lazy import cannot hide a dependency."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "alexnet_jax"
TRAINER = {
  "alexnet_jax.main",
  "alexnet_jax.training.train",
  "alexnet_jax.training.run_setup",
  "alexnet_jax.training.run_files",
}
TOP_LEVEL_HELPERS = {"alexnet_jax", "alexnet_jax.cli", "alexnet_jax.configlib", "alexnet_jax.paths"}


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(roots=(PACKAGE, "experiments")):
  return {module_name(p): p for root in roots for p in (REPO / root).rglob("*.py") if "results" not in p.parts}


def imported_modules(path: pathlib.Path, known) -> set:
  """The modules of `known` that the file at `path` imports (`from a.b import c` names a.b.c where that
  is a module, else a.b)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found |= {
        f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module for alias in node.names
      }
  return {name for name in found if name in known}


def import_graph():
  known = all_modules()
  return {name: imported_modules(path, known) - {name} for name, path in known.items()}


def layer_of(name: str) -> str:
  if name in TRAINER:
    return "trainer"
  if name in TOP_LEVEL_HELPERS:
    return "helpers"
  parts = name.split(".")
  return parts[1] if parts[0] == PACKAGE and len(parts) > 2 else ("entry" if parts[0] == PACKAGE else "experiments")


# What each layer may import (besides itself); anything of the package not listed is refused.
ALLOWED = {
  "helpers": {"helpers"},
  "model": {"helpers"},
  "data": {"helpers"},
  "training": {"helpers", "model", "data"},
  "trainer": {"helpers", "model", "data", "training", "trainer"},
  "tools": {"helpers", "model", "data", "training", "analysis", "tools"},
  "analysis": {"helpers", "model", "data", "training", "analysis"},
}


def layer_violations(graph):
  """'module (layer) imports target (layer)' for every import of the package a layer may not make."""
  return [
    f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
    for name, targets in sorted(graph.items())
    if layer_of(name) in ALLOWED
    for target in sorted(targets)
    if target.startswith(PACKAGE) and layer_of(target) not in ALLOWED[layer_of(name)] | {layer_of(name)}
  ]


def test_each_layer_imports_only_the_layers_below_it():
  graph = import_graph()
  assert "alexnet_jax.model.models" in graph and "alexnet_jax.tools.predict" in graph  # the layout is read
  assert layer_violations(graph) == []


def test_the_layer_check_catches_a_library_module_importing_a_tool_or_the_trainer():
  graph = {
    "alexnet_jax.data.pipeline": {"alexnet_jax.tools.predict"},
    "alexnet_jax.model.models": {"alexnet_jax.training.optim"},
    "alexnet_jax.tools.inference": {"alexnet_jax.training.train", "alexnet_jax.model.build"},
    "alexnet_jax.training.loop": {"alexnet_jax.training.steps"},
  }
  assert layer_violations(graph) == [
    "alexnet_jax.data.pipeline (data) imports alexnet_jax.tools.predict (tools)",
    "alexnet_jax.model.models (model) imports alexnet_jax.training.optim (training)",
    "alexnet_jax.tools.inference (tools) imports alexnet_jax.training.train (trainer)",
  ]


def cycles(graph):
  """Every import cycle, each as the list of modules along it (Tarjan's strongly connected components)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in graph.get(node, ()):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return found


def test_no_module_imports_itself_back():
  assert cycles(import_graph()) == []


@pytest.mark.parametrize(
  "graph,expected",
  [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"a", "b"}}, []),
  ],
)
def test_the_cycle_finder_finds_a_planted_cycle(graph, expected):
  assert cycles(graph) == expected


def importers_of(top_level: str, modules, module_level_only: bool = False) -> list:
  """The modules (name -> path) that import `top_level` or one of its submodules anywhere in their source
  (with `module_level_only`, in the statements run on import, outside any function)."""
  found = []
  for name, path in sorted(modules.items()):
    tree = ast.parse(path.read_text())
    for node in tree.body if module_level_only else ast.walk(tree):
      imported = [a.name for a in node.names] if isinstance(node, ast.Import) else []
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        imported = [node.module]
      if any(m == top_level or m.startswith(top_level + ".") for m in imported):
        found.append(name)
        break
  return found


def test_matplotlib_is_loaded_in_one_place_only_when_a_figure_is_drawn():
  # An optional dependency: one module loads it, lazily, so training and the report's tables run without it.
  assert importers_of("matplotlib", all_modules()) == ["alexnet_jax.analysis.plots"]
  assert importers_of("matplotlib", all_modules(), module_level_only=True) == []


def test_the_importer_finder_sees_lazy_and_submodule_imports(tmp_path):
  lazy = tmp_path / "lazy.py"
  lazy.write_text("def f():\n  import matplotlib.pyplot as plt\n")
  direct = tmp_path / "direct.py"
  direct.write_text("from matplotlib import pyplot\n")
  other = tmp_path / "other.py"
  other.write_text("import matplotlibx\nfrom mat import matplotlib\n")
  assert importers_of("matplotlib", {"lazy": lazy, "direct": direct, "other": other}) == ["direct", "lazy"]
  assert importers_of("matplotlib", {"lazy": lazy, "direct": direct}, module_level_only=True) == ["direct"]
