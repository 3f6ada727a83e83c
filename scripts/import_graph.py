"""The package's import graph, as a reader or a tool sees it, and every place a module is named by a
string instead of imported.

  .venv/bin/python scripts/import_graph.py            # summary: modules, edges, string imports
  .venv/bin/python scripts/import_graph.py --edges    # also every edge, "importer -> imported"

Edges are read from every import statement (a function's too) with `ast`. A string import is
listed: it hides an edge. (The catalog's "module:attribute" names are not imports: the modules they
name are imported plainly by semiseg_tf/models/__init__.py and semiseg_tf/semisup/methods/__init__.py.)
"""
import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "semiseg_tf"
STRING_IMPORTS = {("importlib", "import_module"), ("importlib", "__import__")}


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """(modules `path` imports, lines where it names a module by a string)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, strings = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name)
              and (node.func.value.id, node.func.attr) in STRING_IMPORTS):
            strings.append(node.lineno)
    return found, strings


def main(argv):
    sys.path.insert(0, str(ROOT))
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(path): path for path in files}
    edges, hidden = set(), []
    for name, path in modules.items():
        found, strings = imports_of(path)
        edges.update((name, target) for target in found if target in modules and target != name)
        hidden.extend(f"{path.relative_to(ROOT)}:{line}" for line in strings)
    print(f"{len(modules)} modules, {len(edges)} import edges")
    print(f"string imports: {len(hidden)}")
    for place in hidden:
        print(f"  {place}")
    if "--edges" in argv:
        for importer, imported in sorted(edges):
            print(f"{importer} -> {imported}")


if __name__ == "__main__":
    main(sys.argv[1:])
