"""The README's promises: two set-up commands, the test command in CI, a Python snippet that runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _setup_commands():
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block and README.index(block.group(0)) < 50, "the set-up commands open the README"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_two_setup_commands():
    install, tests = _setup_commands()
    assert "pip install" in install and install.endswith("accelnas demo")
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _setup_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()


def test_readme_python_example_runs():
    snippet = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(snippet, "README.md", "exec"), {})


def test_docs_link_to_existing_files():
    for text in (README, (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")):
        for link in re.findall(r"\]\(((?:docs/|benchmarks/)?[\w./-]+\.md)\)", text):
            base = ROOT if link.startswith(("docs/", "benchmarks/")) else ROOT / "docs"
            assert (base / link).exists(), link
