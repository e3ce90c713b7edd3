"""The corpus as an nnU-Net v2 dataset: integrity, subject split, cancellation and resumption."""
import json
import os

import numpy as np
import pytest

from ventkit.anatomy.corpus import build_corpus, parse_volumes
from ventkit.anatomy.subjects import HOLDOUT_SUBJECTS, is_holdout, split_subjects
from ventkit.errors import InputError
from ventkit.io import read_volume
from ventkit.progress import clear_termination, request_termination


def test_holdout_is_fixed_and_disjoint(subjects):
    split = split_subjects()
    assert sorted(split["holdout"]) == sorted(HOLDOUT_SUBJECTS)
    assert not set(split["train"]) & set(split["holdout"])
    assert len(split["train"]) + len(split["holdout"]) == len(subjects) == 16
    other = [f"patient_{i}" for i in range(200)]
    share = np.mean([is_holdout(s, other) for s in other])
    assert 0.15 < share < 0.35


def test_volume_specs():
    rng = np.random.default_rng(0)
    assert 5 <= parse_volumes("uniform:5:300")(rng) <= 300
    assert parse_volumes("15,30")(rng) in (15.0, 30.0)
    assert parse_volumes("natural")(rng) is None
    for bad in ("uniform:1:400", "lots", "uniform:a:b"):
        with pytest.raises(InputError):
            parse_volumes(bad)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "Dataset990_VentTest"
    build_corpus(root, n=3, volumes="40,120", seed=7, grid="mask", quiet=True)
    return root


def test_dataset_passes_nnunet_integrity_check(dataset):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=1)
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["numTraining"] == 3 and meta["labels"]["third_ventricle"] == 3


def test_cases_hit_their_volumes_on_training_subjects_only(dataset):
    rows = [json.loads(p.read_text()) for p in sorted((dataset / "meta").glob("*.json"))]
    assert {r["subject"] for r in rows}.isdisjoint(HOLDOUT_SUBJECTS)
    for r in rows:
        assert abs(r["measured_ml"] - r["requested_ml"]) <= 0.02 * r["requested_ml"]
        full = read_volume(dataset / "labelsFullTr" / f"{r['case_id']}.nii.gz", labels=True)
        img = read_volume(dataset / "imagesTr" / f"{r['case_id']}_0000.nii.gz")
        np.testing.assert_allclose(full.affine, img.affine)
        lab = read_volume(dataset / "labelsTr" / f"{r['case_id']}.nii.gz", labels=False)
        assert set(np.unique(lab.array)) <= set(range(5))


def test_cancelled_build_keeps_whole_cases_and_resumes(tmp_path):
    root = tmp_path / "Dataset991_Cancel"
    try:  # terminated after the first case, as SIGTERM (a panel's Cancel) does
        with pytest.raises(KeyboardInterrupt):
            build_corpus(root, n=3, volumes="natural", seed=1, grid="mask", quiet=True,
                         callback=lambda i, n, m: request_termination())
    finally:
        clear_termination()
    assert not (root / "dataset.json").exists()
    files = [f for _, _, fs in os.walk(root) for f in fs]
    assert not [f for f in files if ".part" in f], "temporary files left behind"
    assert len(list((root / "imagesTr").glob("*.nii.gz"))) == 1
    first = (root / "imagesTr").glob("*.nii.gz").__next__()
    stamp = first.stat().st_mtime_ns
    meta = build_corpus(root, n=3, volumes="natural", seed=1, grid="mask", quiet=True)
    assert meta["numTraining"] == 3 and first.stat().st_mtime_ns == stamp  # resumed, not redone


def test_holdout_split_goes_to_test_folders(tmp_path):
    root = tmp_path / "Dataset992_Holdout"
    meta = build_corpus(root, n=1, volumes="uniform:100:300", seed=0, split="holdout", grid="mask", quiet=True)
    assert meta["numTest"] == 1 and meta["numTraining"] == 0
    info = json.loads(next((root / "meta").glob("*.json")).read_text())
    assert info["subject"] in HOLDOUT_SUBJECTS and 98 <= info["measured_ml"] <= 306
    assert (root / "imagesTs").is_dir() and (root / "labelsTs").is_dir()


def test_worker_processes_write_the_same_cases(tmp_path):
    serial = build_corpus(tmp_path / "Dataset993_Serial", n=3, volumes="natural", seed=4, grid="mask", quiet=True)
    parallel = build_corpus(tmp_path / "Dataset994_Parallel", n=3, volumes="natural", seed=4, grid="mask",
                            quiet=True, workers=2)
    assert serial["numTraining"] == parallel["numTraining"] == 3
    for case in ("train_0000", "train_0001", "train_0002"):
        a = read_volume(tmp_path / "Dataset993_Serial" / "imagesTr" / f"{case}_0000.nii.gz")
        b = read_volume(tmp_path / "Dataset994_Parallel" / "imagesTr" / f"{case}_0000.nii.gz")
        np.testing.assert_array_equal(a.array, b.array)


def test_clean_acquisition_renders_the_same_maps_as_thin_mildly_biased_scans(tmp_path):
    """The image generator's training renders: the label maps of the varied corpus of that seed, 1 mm
    slices and a milder bias field, so that white matter is more uniform."""
    build_corpus(tmp_path / "Dataset995_Varied", n=2, volumes="60", seed=5, grid="mask", quiet=True)
    meta = build_corpus(tmp_path / "Dataset996_Clean", n=2, volumes="60", seed=5, grid="mask", quiet=True,
                        acquisition="clean")
    assert "clean acquisition" in meta["description"]
    spread = {}
    for name in ("Varied", "Clean"):
        root = tmp_path / f"Dataset99{5 if name == 'Varied' else 6}_{name}"
        for case in ("train_0000", "train_0001"):
            labels = read_volume(root / "labelsFullTr" / f"{case}.nii.gz", labels=True).array
            white = read_volume(root / "imagesTr" / f"{case}_0000.nii.gz").array[np.isin(labels, (2, 41))]
            spread.setdefault(name, []).append(white.std() / white.mean())
            if name == "Clean":
                assert json.loads((root / "meta" / f"{case}.json").read_text())["thickness_mm"] == 1.0
                varied = read_volume(tmp_path / "Dataset995_Varied" / "labelsFullTr" / f"{case}.nii.gz", labels=True)
                np.testing.assert_array_equal(labels, varied.array)
    assert np.mean(spread["Clean"]) < np.mean(spread["Varied"])
    with pytest.raises(InputError, match="acquisition"):
        build_corpus(tmp_path / "Dataset997_X", n=1, grid="mask", acquisition="blurry", quiet=True)
    assert not (tmp_path / "Dataset997_X").exists()


@pytest.mark.parametrize("command", [["corpus", "build", "--volumes", "natural"],
                                     ["synth", "dataset", "--backend", "anatomy", "--volumes", "20,40"]])
def test_terminated_cli_build_keeps_only_whole_cases(tmp_path, command):
    """The Slicer panel's Cancel terminates the dataset build; what stays must be whole cases."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "Dataset995_Term"
    proc = subprocess.Popen([sys.executable, "-m", "ventkit", *command, "--out", str(root), "--n", "6",
                             "--grid", "mask", "--seed", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # a finished case's meta file; pathlib's glob also matches the hidden temporary `.NAME.json.*.part.json`
    while proc.poll() is None and not list((root / "meta").glob("[!.]*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    files = [f for _, _, fs in os.walk(root) for f in fs]
    assert not [f for f in files if ".part" in f], "temporary files left behind"
    metas = {p.stem for p in (root / "meta").glob("*.json")}
    for folder in ("imagesTr", "labelsTr", "labelsFullTr"):
        stems = {p.name.split(".")[0].removesuffix("_0000") if folder == "imagesTr" else p.name.split(".")[0]
                 for p in (root / folder).glob("*.nii.gz")}
        assert stems == metas, folder
    assert 1 <= len(metas) < 6


def test_force_restarts_a_build_made_with_other_settings(tmp_path):
    out = tmp_path / "Dataset992_Force"
    build_corpus(out, 1, "natural", seed=1, grid="mask", quiet=True)
    with pytest.raises(InputError, match="other settings"):
        build_corpus(out, 1, "natural", seed=2, grid="mask", quiet=True)
    build_corpus(out, 1, "natural", seed=2, grid="mask", quiet=True, force=True)
    assert json.loads((out / "build.json").read_text())["seed"] == 2
    assert [json.loads(m.read_text())["seed"] for m in (out / "meta").glob("*.json")] == [2]
