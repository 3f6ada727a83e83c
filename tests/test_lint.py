"""The code passes the linter configured in ruff.toml (pyflakes' errors, pycodestyle's, lines of at
most 110 characters)."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_repository_passes_ruff():
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    done = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_no_file_cites_a_document_outside_the_repository():
    """Comments, docstrings and documents point at the paper, the authors' code or docs/, never at
    the reference notes (SPEC and a section number) that the repository does not hold."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    citing = []
    for path in tracked:
        if path.endswith((".py", ".md", ".flags", ".sh", ".cfg", ".toml")):
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                citing += [f"{path}:{n}" for n, line in enumerate(f, 1)
                           if re.search(r"\bSPEC(\.md| \d)", line)]
    assert not citing, citing


def test_every_import_of_the_package_is_one_a_tool_can_follow():
    """scripts/import_graph.py finds the package's modules and their edges, and no module named by
    a string (a string import added to a module shows up here)."""
    done = subprocess.run([sys.executable, os.path.join("scripts", "import_graph.py"), "--edges"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[1] == "string imports: 0", lines[:5]
    edges = set(lines[2:])
    # A catalogued network's module, the public API's and a plain import of a function's body.
    assert {"semiseg_tf.models -> semiseg_tf.models.dinov2",
            "semiseg_tf.api -> semiseg_tf.trained",
            "semiseg_tf.export -> semiseg_tf.serving"} <= edges, sorted(edges)[:20]
