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


def _ours(path):
    """Whether ``path`` is the project's own (not in a hidden folder such as .git or .venv, or a build)."""
    parts = path.relative_to(ROOT).parts
    return not any(part.startswith(".") or part in {"build", "dist", "node_modules"} for part in parts)


def _code_files():
    return [p for p in ROOT.rglob("*.py") if _ours(p) and "tests" not in p.relative_to(ROOT).parts]


def _documents():
    return [ROOT / "README.md", *ROOT.glob("docs/*.md"), *(p for p in ROOT.glob("*/**/README.md") if _ours(p))]


def test_architecture_map_names_every_core_and_surrogates_module_and_only_existing_files():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Modules") : text.index("## Search space")]
    surrogates_row = next(line for line in table.splitlines() if line.startswith("| `surrogates/` |"))
    for module in sorted((ROOT / "core").glob("*.py")):
        assert module.name == "__init__.py" or f"`core/{module.name}`" in table, module
    for module in sorted((ROOT / "surrogates").glob("*.py")):
        assert module.name == "__init__.py" or f"`{module.name}`" in surrogates_row, module
    for path in re.findall(r"`((?:core|plugins|search|training|surrogates)/[\w./]*)`", text):
        assert (ROOT / path).exists(), path


def test_every_environment_variable_the_code_reads_is_documented():
    docs = "\n".join(p.read_text(encoding="utf-8") for p in ROOT.rglob("*.md") if _ours(p))
    for path in _code_files():
        if path.parts[-2] == "benchmarks":  # the harnesses' own variables are described in their scripts
            continue
        for name in set(re.findall(r"\bACCELNAS_[A-Z0-9_]+", path.read_text(encoding="utf-8"))):
            assert name in docs, f"{name} (read in {path.relative_to(ROOT)}) is named in no document"


def test_every_environment_variable_the_docs_name_is_read_by_the_code():
    code = "\n".join(p.read_text(encoding="utf-8") for p in _code_files())
    for doc in _documents():
        for name in set(re.findall(r"\bACCELNAS_[A-Z0-9_]+", doc.read_text(encoding="utf-8"))):
            assert name in code, f"{name} (named in {doc.relative_to(ROOT)}) is read nowhere"


def _commands(group, prefix=""):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + name + " ")


def test_documented_command_lines_use_options_the_command_has():
    """Every `accelnas CMD ... --option` in a code span or block of the docs names an option of CMD."""
    from accelnas.core.cli import cli

    options = {
        name: {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        for name, command in _commands(cli)
    }
    names = sorted(options, key=len, reverse=True)
    docs = _documents()
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"```.*?\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in lines:
            for found in re.finditer(r"\baccelnas ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", line):
                name = next((n for n in names if f"{found.group(1)} ".startswith(f"{n} ")), None)
                if name is None:
                    continue
                rest = re.split(r"[|;#&]|\baccelnas\b", line[found.end() :])[0]
                for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", rest):
                    assert option in options[name], f"{doc.relative_to(ROOT)}: accelnas {name} has no {option}: {line}"


def test_plugin_walkthrough_code_is_a_plugin_the_registry_accepts():
    """The walk-through's Python blocks, put together as one module, register and declare their target."""
    import types

    from accelnas.core.plugins import PluginRegistry

    text = (ROOT / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
    walk = text[text.index("## Walk-through") :]
    code = "\n\n".join(re.findall(r"```python\n(.*?)```", walk, re.S))
    module = types.ModuleType("walkthrough_plugin")
    exec(compile(code, "writing-a-plugin.md", "exec"), module.__dict__)
    registry = PluginRegistry()
    registry.register(module, "walkthrough")
    registry.check_pending()
    hooks = {"export_model", "compile", "measure_throughput", "measure_latency"}
    assert all(registry.implements(hook) for hook in hooks)
    assert "cpu/torchscript" in registry.targets()
