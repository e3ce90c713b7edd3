"""Labels drawn by another segmenter: their ventricle boundary is marked nnU-Net's "ignore" in training."""
import json

import numpy as np
import pytest

from ventkit.anatomy.corpus import build_corpus
from ventkit.anatomy.nnunet import NnUNetDatasetWriter, uncertain_boundary
from ventkit.errors import InputError
from ventkit.io import Volume
from ventkit.labels import NNUNET_IGNORE
from ventkit.training.segmenter import link_datasets


def cube_classes() -> np.ndarray:
    classes = np.zeros((12, 12, 12), np.uint8)
    classes[3:9, 3:9, 3:9] = 1
    classes[5:7, 5:7, 8] = 3  # a 3rd-ventricle patch on the cube's face
    return classes


def test_band_covers_both_sides_of_the_boundary_and_keeps_core_and_surroundings():
    classes = cube_classes()
    out = uncertain_boundary(classes, 1)
    assert (out[4:8, 4:8, 4:8] == 1).all()  # the core keeps its class
    assert out[3, 5, 5] == out[2, 5, 5] == NNUNET_IGNORE  # last voxel inside, first outside
    assert out[1, 5, 5] == 0 and out[0, 0, 0] == 0  # the surroundings stay background
    assert out[5, 5, 9] == NNUNET_IGNORE and out[5, 5, 10] == 0
    assert set(np.unique(out)) == {0, 1, NNUNET_IGNORE}
    assert (uncertain_boundary(classes, 0) == classes).all()
    wider = uncertain_boundary(classes, 2)
    assert (wider == NNUNET_IGNORE).sum() > (out == NNUNET_IGNORE).sum() and wider[1, 5, 5] == NNUNET_IGNORE


def test_writer_bands_training_labels_only_and_declares_the_ignore_label(tmp_path):
    seg = np.zeros((12, 12, 12), np.int16)
    seg[3:9, 3:9, 3:9] = 4  # left lateral ventricle
    vol = Volume(seg, np.eye(4))
    writer = NnUNetDatasetWriter(tmp_path / "d", ignore_band=1)
    writer.add_case("a", vol.with_array(seg.astype(np.float32)), vol, {})
    writer.add_case("b", vol.with_array(seg.astype(np.float32)), vol, {}, test=True)
    from ventkit.io import read_volume
    assert NNUNET_IGNORE in read_volume(tmp_path / "d/labelsTr/a.nii.gz").array
    assert NNUNET_IGNORE not in read_volume(tmp_path / "d/labelsTs/b.nii.gz").array
    assert writer.finish("d")["labels"]["ignore"] == NNUNET_IGNORE
    assert "ignore" not in NnUNetDatasetWriter(tmp_path / "plain").dataset_json("plain", [])["labels"]
    with pytest.raises(ValueError, match="ignore_band"):
        NnUNetDatasetWriter(tmp_path / "e", ignore_band=-1)


def test_ignore_band_only_for_labels_from_another_segmenter(tmp_path):
    with pytest.raises(InputError, match="only for --contrast real"):
        build_corpus(tmp_path / "d", 1, "natural", grid="mask", contrast="t1", ignore_band=1, quiet=True)
    assert not (tmp_path / "d").exists()


def test_merged_dataset_declares_ignore_when_any_source_does(tmp_path):
    build_corpus(tmp_path / "plain", 1, "natural", seed=0, grid="mask", quiet=True)
    build_corpus(tmp_path / "banded", 1, "natural", seed=0, grid="mask", quiet=True)
    meta = tmp_path / "banded/dataset.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()),
                                "labels": {**json.loads(meta.read_text())["labels"], "ignore": NNUNET_IGNORE}}))
    merged = link_datasets([tmp_path / "plain", tmp_path / "banded"], tmp_path / "raw")
    assert merged["labels"]["ignore"] == NNUNET_IGNORE and merged["numTraining"] == 2
    other = json.loads(meta.read_text())
    other["labels"]["choroid_plexus"] = 6
    meta.write_text(json.dumps(other))
    with pytest.raises(InputError, match="labels or file ending differ"):
        link_datasets([tmp_path / "plain", tmp_path / "banded"], tmp_path / "raw2")


def test_a_model_trains_and_segments_with_ignored_boundaries(tmp_path):
    """nnU-Net trains on a source whose boundary is ignored, and the exported model predicts the 5 classes."""
    from ventkit.io import read_volume, write_volume
    from ventkit.segmentation.predictor import VentricleSegmenter
    from ventkit.training.segmenter import export_segmenter, train_segmenter

    data = tmp_path / "Dataset004_Banded"
    build_corpus(data, 2, "natural", seed=0, grid="mask", quiet=True)
    for label in (data / "labelsTr").glob("*.nii.gz"):
        v = read_volume(label)
        write_volume(v.with_array(uncertain_boundary(v.array.astype(np.uint8), 1)), label, dtype=np.uint8)
    ds = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**ds, "labels": {**ds["labels"], "ignore": NNUNET_IGNORE}}))
    result = train_segmenter([data], tmp_path / "run", "Banded", minutes=30, epochs=1, iterations=1, device="cpu")
    assert result["finished"]
    model = VentricleSegmenter(export_segmenter(tmp_path / "run", tmp_path / "model", {"name": "banded"}), "cpu")
    assert model.predictor.label_manager.num_segmentation_heads == 5
    labels = model.segment(read_volume(data / "imagesTr" / "train_0000_0000.nii.gz"))
    assert set(np.unique(labels.array)) <= {0, 4, 5, 14, 15, 43, 44}
