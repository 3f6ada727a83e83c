"""The package's import graph, as a reader or a tool sees it, and every place a module is named by a
string instead of imported.

  .venv/bin/python scripts/import_graph.py            # summary: modules, edges, string imports
  .venv/bin/python scripts/import_graph.py --edges    # also every edge, "importer -> imported"

Edges are read from every import statement (a function's too) with `ast`; the catalog's entries
("module:attribute", semiseg_tf/catalog.py) are edges from the catalog, and the public API's names
(semiseg_tf/__init__.py) edges from the package. A string import anywhere else is listed: it hides
an edge.
"""
import ast
import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "semiseg_tf"
STRING_IMPORTS = {("lazy", "module"), ("importlib", "import_module")}
# The modules whose string imports are data listed beside them: the catalog's entries and the
# public API's names (semiseg_tf/__init__.py), both counted as edges.
DECLARED = ("semiseg_tf/catalog.py", "semiseg_tf/__init__.py")


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


def api_names():
    """The public API's (module, attribute) pairs: its `_API = {...}` statement run alone (data
    only), since importing the package would load TensorFlow."""
    path = ROOT / PACKAGE / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    statement = next(node for node in tree.body if isinstance(node, ast.Assign)
                     and [getattr(t, "id", None) for t in node.targets] == ["_API"])
    namespace = {}
    exec(compile(ast.Module([statement], []), str(path), "exec"), namespace)
    return set(namespace["_API"].values())


def catalog_edges():
    # The catalog imports nothing of the package: read from its file, the package (and with it
    # TensorFlow) is not loaded.
    spec = importlib.util.spec_from_file_location("catalog", ROOT / PACKAGE / "catalog.py")
    catalog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalog)
    entries = [catalog.network(n) for n in catalog.network_names()]
    entries += [catalog.method(n) for n in catalog.method_names()]
    return {entry.builder.split(":")[0] for entry in entries if isinstance(entry.builder, str)}


def main(argv):
    sys.path.insert(0, str(ROOT))
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(path): path for path in files}
    edges, hidden = set(), []
    for name, path in modules.items():
        found, strings = imports_of(path)
        edges.update((name, target) for target in found if target in modules and target != name)
        if str(path.relative_to(ROOT)) not in DECLARED:
            hidden.extend(f"{path.relative_to(ROOT)}:{line}" for line in strings)
    edges.update((f"{PACKAGE}.catalog", target) for target in catalog_edges())
    edges.update((PACKAGE, target) for target, _ in api_names())
    print(f"{len(modules)} modules, {len(edges)} import edges")
    print(f"string imports other than the catalog's and the public API's: {len(hidden)}")
    for place in hidden:
        print(f"  {place}")
    if "--edges" in argv:
        for importer, imported in sorted(edges):
            print(f"{importer} -> {imported}")


if __name__ == "__main__":
    main(sys.argv[1:])
