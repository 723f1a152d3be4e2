"""Rules the repository keeps as a whole: it stands alone, its citations resolve, and the training scripts share one
skeleton with the algorithm first."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["soft_policy_iteration_tabular.py", "sac_continuous.py", "sac_discrete.py", "soft_q_learning.py"]
TRAINING_SCRIPTS = SCRIPTS[1:]
BANNER = "# ---- Plumbing: run directory, logging, checkpoints, resume, errors. Safe to skip on a first read. ----"
SHARED_END = "# ---- end of the shared plumbing ----"
DOCS_PAGE = {"SPI": "soft_policy_iteration.md", "SQL": "soft_q_learning.md", "SAC": "sac.md", "DSAC": "sac_discrete.md"}
LABEL = re.compile(r"\b(SPI|SQL|SAC|DSAC)-(\d+)\b")
OUTSIDE = re.compile(r"\.\./shared|NOTES|CONVENTIONS|\d{3}_[0-9a-f]{16}|\b00\d (Eq|§|J\d|\")|\bpitfall \d|\berror \d+\b"
                     r"|\b\d{3} Eq\. \d")


def tracked_files() -> list[Path]:
    """Every file git tracks, but the generated benchmark results and binary files."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [ROOT / name for name in listed if not name.startswith("benchmarks/results/")]
    return [path for path in files if path.suffix in {".py", ".md", ".yaml", ".txt", ".ini", ".cfg", ""} and path.is_file()]


def test_nothing_points_outside_the_repository():
    offenders = []
    for path in tracked_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line) and path.name != "test_repository.py":
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_equation_label_a_script_cites_exists_in_docs(script):
    text = (ROOT / script).read_text()
    labels = {(family, int(number)) for family, number in LABEL.findall(text)}
    assert labels, f"{script} cites no equation of docs/"
    for family, number in sorted(labels):
        page = (ROOT / "docs" / DOCS_PAGE[family]).read_text()
        assert f"({family}-{number})" in page or f"\\tag{{{family}-{number}}}" in page, \
            f"{script} cites ({family}-{number}), which docs/{DOCS_PAGE[family]} does not define"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_docs_anchor_a_script_cites_exists(script):
    for page, anchor in re.findall(r"docs/([a-z_]+\.md)#([a-z0-9-]+)", (ROOT / script).read_text()):
        assert f'<a id="{anchor}"></a>' in (ROOT / "docs" / page).read_text(), f"{script} cites docs/{page}#{anchor}"


@pytest.mark.parametrize("page", DOCS_PAGE.values())
def test_each_docs_page_links_its_script_and_tests(page):
    head = (ROOT / "docs" / page).read_text().splitlines()[0]
    linked = re.findall(r"\(\.\./([\w/]+\.py)\)", head)
    assert any(name in SCRIPTS for name in linked) and any(name.startswith("tests/") for name in linked), head
    assert all((ROOT / name).exists() for name in linked), head


def shared_block(script: str) -> str:
    text = (ROOT / script).read_text()
    start = text.rindex("\n", 0, text.index(BANNER) - 1)  # from the rule line above the banner
    return text[start:text.index(SHARED_END) + len(SHARED_END)]


def test_the_plumbing_block_is_the_same_text_in_every_training_script():
    reference = shared_block(TRAINING_SCRIPTS[0])
    for script in TRAINING_SCRIPTS[1:]:
        assert shared_block(script) == reference, f"the shared plumbing of {script} differs from {TRAINING_SCRIPTS[0]}"


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_the_algorithm_comes_before_the_plumbing(script):
    text = (ROOT / script).read_text()
    above = text[:text.index(BANNER)]
    assert "\ndef train(" in above and "\ndef evaluate(" in above
    for plumbing in ("signal.signal(", 'import_module("wandb")', "torch.save(", "torch.load(", "def shared_checks(",
                     "def validate", "args.json", "def load_checkpoint", "def main("):
        assert plumbing not in above, f"{script}: '{plumbing}' stands above the plumbing banner"


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_nothing_below_the_banner_changes_what_is_learned(script):
    """Below the banner no code assigns to a field of args or seeds a random generator: presets, defaults that depend
    on the task, and seeding stand above it, where a learner reads them."""
    text = (ROOT / script).read_text()
    below = ast.parse(text[text.index(BANNER):])
    offenders = []
    for node in ast.walk(below):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == "args":
                    offenders.append(f"line {node.lineno}: assigns args.{part.attr}")
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name == "setattr" and ast.unparse(node.args[0]) == "args" or name.endswith(("seed", "manual_seed")):
                offenders.append(f"line {node.lineno}: calls {name}")
    assert not offenders, f"{script}, below the banner: {offenders}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_file_a_script_names_exists(script):
    named = set(re.findall(r"\b((?:docs|tests|benchmarks)/[\w/.-]*\w\.(?:md|py|json))", (ROOT / script).read_text()))
    assert named and not [name for name in named if not (ROOT / name).exists()], named


@pytest.mark.parametrize("script", SCRIPTS)
def test_lines_are_at_most_120_characters(script):
    long = [number for number, line in enumerate((ROOT / script).read_text().splitlines(), 1) if len(line) > 120]
    assert not long, f"{script}: lines {long} are longer than 120 characters"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_docstring_is_one_line(script):
    """tyro keeps an indented continuation line as a line break in --help, mid-sentence."""
    args = next(node for node in ast.parse((ROOT / script).read_text()).body
                if isinstance(node, ast.ClassDef) and node.name == "Args")
    broken = [field.target.id for field, doc in zip(args.body, args.body[1:])
              if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr) and "\n" in doc.value.value]
    assert not broken, f"{script}: the docstrings of {broken} span several lines; --help would break them"


def test_every_test_the_docs_name_exists():
    defined = {path.name: set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
               for path in (ROOT / "tests").glob("test_*.py")}
    everywhere = set().union(*defined.values())
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text()
        for file, name in re.findall(r"tests/(test_\w+\.py)::(test_\w+)", text):
            assert name in defined.get(file, ()), f"docs/{page.name} names tests/{file}::{name}, which does not exist"
        for name in re.findall(r"`(test_\w+)`", text):
            assert name in everywhere, f"docs/{page.name} names {name}, which does not exist"
