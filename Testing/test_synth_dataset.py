"""`ventkit synth dataset`: nnU-Net raw datasets of synthesized pairs, with requested vs measured volumes."""
import csv
import json

import pytest

from ventkit.cli import main
from ventkit.errors import InputError
from ventkit.progress import clear_termination, request_termination
from ventkit.synthesis.dataset import build_synthetic_dataset, check_volume_spec
from ventkit.synthesis.pairs import load_synthesizer


@pytest.fixture(scope="module")
def synth(subjects):
    return load_synthesizer("anatomy", grid="mask")


def test_dataset_cases_csv_and_histogram(synth, tmp_path):
    out = tmp_path / "Dataset310_Synth"
    assert main(["synth", "dataset", "--backend", "anatomy", "--grid", "mask", "--n", "2", "--volumes", "25,180",
                 "--seed", "4", "--out", str(out)]) == 0
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 2 and "anatomy backend" in dataset["description"]
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["case_id"] for r in rows] == ["synth_0000", "synth_0001"]
    for r in rows:
        assert float(r["requested_ml"]) in (25.0, 180.0)
        assert abs(float(r["measured_ml"]) - float(r["requested_ml"])) <= 0.03 * float(r["requested_ml"])
    assert (out / "volumes.png").read_bytes()[:4] == b"\x89PNG"
    # resuming with more cases keeps the finished ones untouched and reproduces the recipe
    image = out / "imagesTr" / "synth_0000_0000.nii.gz"
    stamp = image.stat().st_mtime_ns
    build_synthetic_dataset(synth, out, 3, "25,180", seed=4, quiet=True)
    assert image.stat().st_mtime_ns == stamp
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 3


def test_cancel_between_cases_keeps_whole_cases(synth, tmp_path):
    out = tmp_path / "Dataset311_Cancel"
    try:  # terminated after the first case, as SIGTERM (a panel's Cancel) does
        with pytest.raises(KeyboardInterrupt):
            build_synthetic_dataset(synth, out, 4, "uniform:20:60", callback=lambda i, n, m: request_termination(),
                                    quiet=True)
    finally:
        clear_termination()
    assert [p.stem for p in (out / "meta").glob("*.json")] == ["synth_0000"]
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 1 and not (out / "dataset.json").exists()


@pytest.mark.parametrize("spec, message", [("natural", "not 'natural'"), ("uniform:5:400", "must lie in"),
                                           ("5,abc", "cannot parse")])
def test_bad_volume_spec_is_refused_before_writing(synth, tmp_path, spec, message):
    with pytest.raises(InputError, match=message):
        build_synthetic_dataset(synth, tmp_path / "x", 2, spec)
    assert not (tmp_path / "x").exists()


def test_volumes_outside_the_synthesizers_range_are_refused():
    with pytest.raises(InputError, match="range 15-250 mL"):
        check_volume_spec("uniform:10:200", (15.0, 250.0))
    check_volume_spec("15,250", (15.0, 250.0))
