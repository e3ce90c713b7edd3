import numpy as np
import pytest

from conftest import SHARED_PRIORS
from ventkit import labels as L


def test_33_segmentation_labels_with_colours():
    assert len(L.SEGMENTATION_IDS) == 33 and len(set(L.SEGMENTATION_IDS)) == 33
    assert all(len(lab.rgb) == 3 for lab in L.SEGMENTATION_LABELS)
    assert len(L.colour_table_lines()) == 33


def test_ventricle_groups():
    assert L.VENTRICLE_GROUPS["lateral"] == (4, 43)
    assert L.VENTRICLE_GROUPS["inferior_lateral"] == (5, 44)
    assert set(L.VENTRICLE_GROUPS["total"]) == {4, 5, 14, 15, 43, 44}
    assert sorted(set(L.NNUNET_VENTRICLE_CLASSES.values())) == list(range(1, 5))
    assert sorted(L.NNUNET_CLASS_NAMES.values()) == list(range(5))
    # left and right share a class: mirroring augmentation must not change a voxel's class
    for left, right in ((4, 43), (5, 44)):
        assert L.NNUNET_VENTRICLE_CLASSES[left] == L.NNUNET_VENTRICLE_CLASSES[right]


def test_generation_mapping_agrees_with_synthseg_priors():
    """Our mapping of SynthSeg's 54 generation labels reproduces its 2.0 segmentation list.

    That list has one more extra-cerebral entry (55 vs 54); removing one of its background
    entries in the extra-cerebral block must give exactly our mapping.
    """
    gen = np.load(SHARED_PRIORS / "generation_labels.npy")
    seg = list(np.load(SHARED_PRIORS / "synthseg_segmentation_labels_2.0.npy"))
    ours = [L.TO_SEGMENTATION[int(g)] for g in gen]
    first_extra = 5  # after 0, 14, 15, 16, 24
    assert seg[first_extra] == 0
    assert ours == seg[:first_extra] + seg[first_extra + 1:]
    assert set(ours) == set(L.SEGMENTATION_IDS)


def test_to_segmentation_maps_and_fills_midline_labels():
    a = np.array([[[0, 136, 163, 502, 25, 251, 41]]])
    out = L.to_segmentation(a)
    assert out.tolist() == [[[0, 4, 43, 0, 2, 2, 41]]]  # 251 (corpus callosum) takes its nearest neighbour


def test_unknown_labels_are_rejected():
    with pytest.raises(ValueError, match=r"unknown label values \[999\]"):
        L.to_segmentation(np.array([[[0, 2, 999]]]))


def test_slicer_colour_table_is_generated_from_the_label_table():
    from pathlib import Path

    ctbl = Path(__file__).resolve().parents[1] / "Resources" / "ColorTables" / "VentSynthLabels.ctbl"
    lines = [ln for ln in ctbl.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == L.colour_table_lines()


def test_mirror_exchanges_sides_and_keeps_midline():
    rng = np.random.default_rng(0)
    ids = np.array(L.SEGMENTATION_IDS, np.int16)
    m = ids[rng.integers(len(ids), size=(6, 5, 4))]
    mirrored = L.mirror_labels(m)
    assert mirrored[0, 0, 0] == L.MIRROR_ID[int(m[-1, 0, 0])]
    assert np.array_equal(L.mirror_labels(mirrored), m)
    assert L.MIRROR_ID[4] == 43 and L.MIRROR_ID[60] == 28 and L.MIRROR_ID[14] == 14
    assert all(L.MIRROR_ID[i] in L.RIGHT_IDS for i in L.LEFT_IDS)
