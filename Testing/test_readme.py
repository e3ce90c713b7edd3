"""The README states what the code and the model cards say: its results tables are the cards' figures,
its settings table is `ventkit.paths`', its test command is the one CI runs."""
import re
from pathlib import Path

from ventkit import paths
from ventkit.evaluation import card_results, real_mri_results
from ventkit.models import read_card
from ventkit.segmentation.segment import model_folder, shipped_models

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
RESULTS = re.compile(r"<!-- results: ventkit models --results -->\n(.*?)<!-- end results -->", re.S)


def readme_results() -> str:
    cards = {m: read_card(model_folder(m)) for m in shipped_models()}
    return card_results(cards) + "\n" + real_mri_results(cards)


def test_results_tables_are_the_model_cards_figures():
    found = RESULTS.search(README)
    assert found, "README lacks the results markers"
    expected = readme_results()
    assert "| augmented |" in expected, "the default model's card has no hold-out figures"
    assert found.group(1) == expected, "README results differ from the model cards: rerun `ventkit models --results`"


def test_settings_table_is_the_one_in_paths():
    table = [line for line in paths.__doc__.splitlines() if line.startswith("|")]
    assert len(table) >= 7 and "\n".join(table) in README


def test_ci_runs_the_readme_test_command():
    command = re.search(r"Run the tests:\n\n```bash\n(.*?)\n```", README).group(1)
    assert command in (REPO / ".ci" / "run").read_text()
