"""Volumes in mL per structure and ventricle group, left/right asymmetry and the Evans index.

Volumes use the voxel size of the affine given, never an assumed 1 mm.
"""
from __future__ import annotations

import numpy as np

from .io import Volume, reorient_to_ras
from .labels import LABEL_BY_ID, SEGMENTATION_IDS, VENTRICLE_GROUPS, VENTRICLES, to_segmentation

THALAMUS_IDS = (10, 49)
LATERAL_IDS = (4, 43)


def label_volumes_ml(labels: Volume) -> dict[int, float]:
    """mL of every non-zero label value present in `labels` (voxel count x voxel volume)."""
    values, counts = np.unique(labels.array, return_counts=True)
    return {int(v): float(c) * labels.voxel_ml for v, c in zip(values, counts) if v != 0}


def ventricle_volumes_ml(labels: Volume) -> dict[str, float]:
    """mL of each ventricle structure and group (keys of VENTRICLES and VENTRICLE_GROUPS)."""
    per_label = label_volumes_ml(labels)
    out = {name: sum(per_label.get(i, 0.0) for i in ids) for name, ids in VENTRICLES.items()}
    out.update({f"{g}_total": sum(per_label.get(i, 0.0) for i in ids)
                for g, ids in VENTRICLE_GROUPS.items() if g in ("lateral", "inferior_lateral")})
    out["total"] = sum(per_label.get(i, 0.0) for i in VENTRICLE_GROUPS["total"])
    return out


def asymmetry_percent(left: float, right: float) -> float:
    """(L - R) / mean(L, R) in percent; 0 when both are empty."""
    mean = (left + right) / 2.0
    return 0.0 if mean == 0 else 100.0 * (left - right) / mean


def evans_index(labels: Volume) -> dict | None:
    """Evans index on axial slices of the RAS-oriented map, or None if it cannot be measured.

    Frontal horns are the lateral-ventricle voxels anterior to the thalami (the foramina of Monro).
    On each axial slice the frontal-horn width is the largest left-right distance between the outer
    walls of the two horns on one coronal line; the inner cranial width is the largest left-right
    extent of the intracranial labels on that slice. The slice with the widest horns is reported.
    """
    ras = reorient_to_ras(labels)
    seg = ras.array
    sx, sy, sz = ras.spacing
    thal = np.isin(seg, THALAMUS_IDS)
    lat = np.isin(seg, LATERAL_IDS)
    if not thal.any() or not (seg == 4).any() or not (seg == 43).any():
        return None
    y_monro = np.nonzero(thal.any(axis=(0, 2)))[0].max()
    frontal = lat.copy()
    frontal[:, : y_monro + 1, :] = False
    intracranial = seg > 0
    best = None
    x = np.arange(seg.shape[0], dtype=float)
    for k in np.nonzero(frontal.any(axis=(0, 1)))[0]:
        left, right = frontal[:, :, k] & (seg[:, :, k] == 4), frontal[:, :, k] & (seg[:, :, k] == 43)
        rows = left.any(axis=0) & right.any(axis=0)
        if not rows.any():
            continue
        # RAS: left hemisphere has smaller x; outer walls are min x (left) and max x (right).
        xl = np.where(left[:, rows], x[:, None], np.inf).min(axis=0)
        xr = np.where(right[:, rows], x[:, None], -np.inf).max(axis=0)
        width = float(((xr - xl) + 1).max() * sx)
        ic = intracranial[:, :, k]
        ic_lo = np.where(ic, x[:, None], np.inf).min(axis=0)
        ic_hi = np.where(ic, x[:, None], -np.inf).max(axis=0)
        ic_width = float(((ic_hi - ic_lo) + 1)[ic.any(axis=0)].max() * sx)
        if best is None or width > best["frontal_horn_width_mm"]:
            best = {"frontal_horn_width_mm": width, "inner_cranial_width_mm": ic_width, "slice_ras": int(k)}
    if best is None:
        return None
    best["evans_index"] = best["frontal_horn_width_mm"] / best["inner_cranial_width_mm"]
    best["slice_z_mm"] = float((ras.affine @ [0, 0, best["slice_ras"], 1])[2])
    return best


def volume_report(labels: Volume) -> dict:
    """Everything VentSegment reports for one label map, as plain JSON-able values."""
    seg = labels.with_array(to_segmentation(labels.array))
    per_label = label_volumes_ml(seg)
    vents = ventricle_volumes_ml(seg)
    left = vents["left_lateral"] + vents["left_inferior_lateral"]
    right = vents["right_lateral"] + vents["right_inferior_lateral"]
    return {
        "source": labels.source,
        "voxel_size_mm": [round(float(s), 6) for s in labels.spacing],
        "structures_ml": {LABEL_BY_ID[i].name: per_label.get(i, 0.0) for i in SEGMENTATION_IDS if i},
        "ventricles_ml": vents,
        "ventricles_total_ml": vents["total"],
        "lateral_asymmetry_percent": asymmetry_percent(vents["left_lateral"], vents["right_lateral"]),
        "left_right_asymmetry_percent": asymmetry_percent(left, right),
        "evans": evans_index(seg),
    }
