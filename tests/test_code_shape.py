"""The package stays readable: no function longer than a screen (issue 13's limit)."""

import ast
import pathlib

import quickdraw_tf

MAX_FUNCTION_LINES = 60  # def line to last line, docstring included


def _functions(path):
  tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_sixty_lines():
  root = pathlib.Path(quickdraw_tf.__file__).parent
  too_long = [f"{path.relative_to(root.parent)}:{line} {name} ({length} lines)"
              for path in sorted(root.rglob("*.py")) for name, line, length in _functions(path)
              if length > MAX_FUNCTION_LINES]
  assert not too_long, "split these along their steps:\n" + "\n".join(too_long)


def test_the_check_sees_a_long_function(tmp_path):
  path = tmp_path / "long.py"
  path.write_text("def f():\n" + "  x = 1\n" * MAX_FUNCTION_LINES)
  assert [length for _, _, length in _functions(path)] == [MAX_FUNCTION_LINES + 1]
