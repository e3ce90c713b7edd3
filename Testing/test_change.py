"""`ventkit change`: two visits of one head compared in one space, with the change's uncertainty (issue 34).

The segmenter here reads the ventricles off the label map each scan was rendered from (resampled onto the
scan's grid), with a fixed SD per volume: these tests check the registration, the bookkeeping, the
warnings and the files, not the network (bench/follow_up.py measures that).
"""
import json

import numpy as np
import pytest

from head_variants import stored_lps, turned
from ventkit.anatomy.corpus import brain_center
from ventkit.anatomy.grid import GRIDS, sample_labels
from ventkit.anatomy.render import RenderSpec, render
from ventkit.anatomy.subjects import load_subject
from ventkit.change import compare, compare_visits
from ventkit.cli import main
from ventkit.errors import VentkitError
from ventkit.io import Volume, write_volume
from ventkit.labels import VENTRICLE_IDS, to_segmentation
from ventkit.volumetry import REPORT_ROWS, VolumeReport


class TruthSegmenter:
    """Ventricles from the label map the scan was rendered from; SD 1 mL per structure."""

    description = "truth (test)"
    card = {"follow_up": {"repeatability_sd_ml": {"total": 1.5}}}

    def __init__(self, sources: dict):
        self.sources = sources  # scan source name -> label Volume

    def segment_with_uncertainty(self, volume):
        labels = self.sources[volume.source]
        on_grid = sample_labels(labels, volume.affine, volume.array.shape)
        on_grid = np.where(np.isin(on_grid, VENTRICLE_IDS), on_grid, 0).astype(np.int16)
        from ventkit.volumetry import ventricle_volumes_ml

        v = ventricle_volumes_ml(Volume(on_grid, volume.affine))
        return Volume(on_grid, volume.affine, volume.source), [{k: x + d for k, x in v.items()} for d in (-1, 1)]

    def segment(self, volume):
        return self.segment_with_uncertainty(volume)[0]


def head(subjects, name, seed, spacing=2.0):
    source = load_subject(str(subjects[name]))
    shape = tuple(int(round(s * 2 / spacing)) for s in GRIDS["seg2mm"].shape)
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = brain_center(source) - (np.array(shape) - 1) / 2 * spacing
    labels = Volume(to_segmentation(sample_labels(source, affine, shape)), affine, name)
    image, _ = render(labels.array, (spacing,) * 3, np.random.default_rng(seed), RenderSpec(thickness_mm=(1, 1)))
    return Volume(image, affine, name), labels


def write_pair(tmp_path, first, second):
    paths = [write_volume(v, tmp_path / f"visit{k}.nii.gz") for k, (v, _) in enumerate((first, second))]
    sources = {str(p): lab for p, (_, lab) in zip(paths, (first, second))}
    return paths, TruthSegmenter(sources)


def test_the_same_head_on_another_grid_and_orientation_shows_no_change(subjects, tmp_path):
    baseline = head(subjects, "training_seg_01", 0)
    image, labels = turned(*head(subjects, "training_seg_01", 1, spacing=1.6), "z", 12)
    followup = (stored_lps(image), stored_lps(labels))
    paths, seg = write_pair(tmp_path, baseline, followup)
    result = compare_visits(*paths, tmp_path / "out", seg)
    total = next(r for r in result["structures"] if r["structure"] == "total")
    assert abs(total["change_ml"]) < 0.05 * total["baseline_ml"] and not total["changed"]
    assert total["change_sd_ml"] == pytest.approx(np.sqrt(2 * 2 + 1.5 ** 2), rel=1e-6)  # two visits' SD, repeat term
    assert result["registration"]["match"] > 0.55 and not result["warnings"]
    assert 9 < result["registration"]["rotation_deg"] < 15
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {"visit0_change.json", "visit0_change.csv", "visit0_change.png",
                     "visit0_baseline_ventricles.nii.gz", "visit1_followup_ventricles.nii.gz"}
    saved = json.loads((tmp_path / "out" / "visit0_change.json").read_text())
    assert saved["structures"][-1]["structure"] == "total"


def test_a_follow_up_of_another_head_warns(subjects, tmp_path):
    paths, seg = write_pair(tmp_path, head(subjects, "training_seg_01", 0), head(subjects, "training_seg_06", 4))
    result = compare_visits(*paths, tmp_path / "out", seg)
    assert any("does not match the baseline" in w for w in result["warnings"])


def test_a_scan_that_fails_to_segment_writes_nothing(subjects, tmp_path, capsys):
    first = head(subjects, "training_seg_01", 0)
    empty = (first[0], first[1].with_array(np.zeros_like(first[1].array)))  # a segmenter that finds nothing
    paths, seg = write_pair(tmp_path, first, empty)
    with pytest.raises(VentkitError, match="found no ventricles"):
        compare_visits(*paths, tmp_path / "out", seg)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_change_interval_and_flag():
    def report(v, sd):
        return VolumeReport("scan", [1.0] * 3, dict.fromkeys(REPORT_ROWS, v), 0.0, 0.0,
                            ventricles_sd_ml=dict.fromkeys(REPORT_ROWS, sd))

    rows = {r["structure"]: r for r in compare(report(50.0, 1.0), report(56.0, 1.0), {"total": 2.0})}
    assert rows["total"]["change_ml"] == 6.0 and rows["total"]["change_percent"] == pytest.approx(12.0)
    assert rows["total"]["change_sd_ml"] == pytest.approx(np.sqrt(6.0))
    assert rows["total"]["changed"] and rows["third"]["changed"]  # 6 > 1.96 * sqrt(2) too
    rows = {r["structure"]: r for r in compare(report(50.0, 1.0), report(53.0, 1.0), {"total": 2.0})}
    assert not rows["total"]["changed"] and rows["third"]["changed"]
    calibrated = report(53.0, 8.0)  # absolute SD 8 mL, of which the test-time passes spread 1 mL
    calibrated.uncertainty = {"sd_scale": 8.0}
    rows = {r["structure"]: r for r in compare(report(50.0, 1.0), calibrated, {"total": 2.0})}
    assert rows["total"]["followup_sd_ml"] == 8.0 and rows["total"]["change_sd_ml"] == pytest.approx(np.sqrt(6.0))


def test_cli_change_refuses_bad_arguments_before_work(tmp_path, capsys):
    assert main(["change", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
