"""The package's modules import in one direction: no circle, imports inside functions counted too."""

import ast
import pathlib

import quickdraw_tf

ROOT = pathlib.Path(quickdraw_tf.__file__).parent


def _module_name(root, path):
  parts = path.relative_to(root.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root=ROOT):
  """{module: set of the package's modules it imports anywhere in its file} for every module under ``root``."""
  modules = {_module_name(root, path): path for path in sorted(root.rglob("*.py"))}
  graph = {}
  for name, path in modules.items():
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, ast.Import):
        imported.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # "from a.b import c": the module a.b.c when there is one, else a name of a.b.
        imported.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                        for alias in node.names)
    graph[name] = {module for module in imported if module in modules and module != name}
  return graph


def find_circle(graph):
  """One import circle as a list of modules (first == last), or None."""
  state = {}

  def visit(module, path):
    state[module] = "open"
    for imported in sorted(graph[module]):
      if state.get(imported) == "open":
        return path[path.index(imported):] + [imported]
      if imported not in state:
        circle = visit(imported, path + [imported])
        if circle:
          return circle
    state[module] = "done"
    return None

  for module in sorted(graph):
    if module not in state:
      circle = visit(module, [module])
      if circle:
        return circle
  return None


def test_no_import_circle_in_the_package():
  graph = import_graph()
  assert "quickdraw_tf.serving.saved_model" in graph["quickdraw_tf.export"]
  circle = find_circle(graph)
  assert circle is None, " -> ".join(circle)


def test_the_check_finds_a_circle_through_an_import_inside_a_function(tmp_path):
  package = tmp_path / "quickdraw_tf"
  (package / "serving").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "serving" / "__init__.py").write_text("")
  (package / "export.py").write_text("from quickdraw_tf.serving import tflite\n")
  (package / "serving" / "tflite.py").write_text("def f():\n  from quickdraw_tf import export\n")
  assert find_circle(import_graph(package)) == [
      "quickdraw_tf.export", "quickdraw_tf.serving.tflite", "quickdraw_tf.export"]
