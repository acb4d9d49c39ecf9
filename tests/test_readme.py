"""CI must run the README's test command exactly, so a missing install step fails CI, not a user."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:]
    return [block.split("```", 1)[0].strip() for block in blocks]


def test_ci_runs_the_readme_test_command_exactly():
    test_command = next(c for c in readme_commands() if "pytest" in c)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_main_command_installs_train_extra_and_trains_digits():
    main_command = readme_commands()[0]
    assert 'pip install ".[train]"' in main_command and "edgecls train" in main_command


def test_ci_names_every_file_that_holds_a_heavy_or_arm64_test():
    """.ci/run runs its opt-in groups on the files it names: a new heavy or arm64 test elsewhere would never run."""
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    for marker in ("heavy", "arm64"):
        command = next(line for line in ci.splitlines() if f"-m {marker}" in line and not line.startswith("#"))
        named = set(re.findall(r"tests/\S+\.py", command))
        holding = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")
                   if f"pytest.mark.{marker}" in path.read_text()}
        assert holding and named == holding, (marker, named ^ holding)
