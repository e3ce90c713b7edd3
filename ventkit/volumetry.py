"""Volumes in mL per structure and ventricle group, left/right asymmetry and the Evans index, and the one
report that carries them (`VolumeReport`) with its text, CSV and JSON renderings and its comparison with
a reference segmenter's report.

Volumes use the voxel size of the affine given, never an assumed 1 mm.
"""
from __future__ import annotations

import csv
import io as _io
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .io import Volume, reorient_to_ras
from .labels import LABEL_BY_ID, SEGMENTATION_IDS, VENTRICLE_GROUPS, VENTRICLES, to_segmentation

THALAMUS_IDS = (10, 49)
LATERAL_IDS = VENTRICLE_GROUPS["lateral"]
REPORT_ROWS = ("left_lateral", "right_lateral", "left_inferior_lateral", "right_inferior_lateral", "third",
               "fourth", "total")
COMPARED_ROWS = ("total", "left_lateral", "right_lateral")  # where a disagreement with the reference is flagged
DISAGREEMENT_PERCENT = 10.0  # ... when the two differ by more than this share of the reference's volume
DISAGREEMENT_MIN_ML = 1.0  # ... and by more than this


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


@dataclass
class VolumeReport:
    """What VentSegment reports for one label map.

    Args:
        source: the label map's or scan's file.
        voxel_size_mm: the voxel size the volumes were measured at.
        ventricles_ml: mL per ventricle structure and group (`ventricle_volumes_ml`).
        lateral_asymmetry_percent: (L - R) / mean of the lateral ventricles.
        left_right_asymmetry_percent: the same for lateral plus inferior lateral ventricles.
        evans: `evans_index`'s measurement, None where it cannot be made.
        structures_ml: mL of every label of a whole-brain map (None for a ventricles-only segmentation).
        model: the segmenter that drew the map.
        ventricles_sd_ml: the SD of each volume (`ventricles_ml`'s keys), when measured.
        uncertainty: how that SD was measured.
        warnings: what was uncertain on the way (sides, header).
    """

    source: str
    voxel_size_mm: list[float]
    ventricles_ml: dict[str, float]
    lateral_asymmetry_percent: float
    left_right_asymmetry_percent: float
    evans: dict | None = None
    structures_ml: dict[str, float] | None = None
    model: str | None = None
    ventricles_sd_ml: dict[str, float] | None = None
    uncertainty: dict | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        missing = [k for k in REPORT_ROWS if k not in self.ventricles_ml]
        if missing:
            raise ValueError(f"ventricles_ml lacks {', '.join(missing)}")
        if self.ventricles_sd_ml is not None and set(self.ventricles_sd_ml) != set(self.ventricles_ml):
            raise ValueError("ventricles_sd_ml must have the keys of ventricles_ml")

    @property
    def total_ml(self) -> float:
        return self.ventricles_ml["total"]

    @property
    def evans_index(self) -> float | None:
        return (self.evans or {}).get("evans_index")

    @classmethod
    def from_dict(cls, data: dict) -> "VolumeReport":
        """The report of `to_dict`'s JSON (keys it does not know, such as `ventricles_total_ml`, ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def to_dict(self) -> dict:
        """JSON-able; `ventricles_total_ml` repeated at the top, the optional parts only where present."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return {"source": out.pop("source"), "ventricles_total_ml": self.total_ml, **out}

    def text(self) -> str:
        """The table printed on the command line: one line per structure (± SD), asymmetry, Evans index."""
        sd = self.ventricles_sd_ml
        lines = [f"{key.replace('_', ' '):<26}{self.ventricles_ml[key]:9.2f}" + (f" ± {sd[key]:5.2f}" if sd else "")
                 + " mL" for key in REPORT_ROWS]
        lines.append(f"{'lateral asymmetry (L-R)':<26}{self.lateral_asymmetry_percent:9.1f} %")
        lines.append(f"{'Evans index':<26}" + ("      n/a" if self.evans_index is None else f"{self.evans_index:9.3f}"))
        return "\n".join(lines)

    def csv(self) -> str:
        """structure, volume_ml (, sd_ml) rows, then the asymmetries and the Evans index."""
        buf = _io.StringIO()
        w = csv.writer(buf)
        sd = self.ventricles_sd_ml
        w.writerow(["structure", "volume_ml"] + (["sd_ml"] if sd else []))
        for key in REPORT_ROWS:
            w.writerow([key, f"{self.ventricles_ml[key]:.3f}"] + ([f"{sd[key]:.3f}"] if sd else []))
        w.writerow(["lateral_asymmetry_percent", f"{self.lateral_asymmetry_percent:.2f}"])
        w.writerow(["left_right_asymmetry_percent", f"{self.left_right_asymmetry_percent:.2f}"])
        w.writerow(["evans_index", "" if self.evans_index is None else f"{self.evans_index:.4f}"])
        return buf.getvalue()

    def row(self, uncertainty: bool | None = None, structures: bool = False) -> dict[str, str]:
        """One flat CSV row (`row_fields`' columns): volumes, their SDs (with `uncertainty`, by default
        when measured), asymmetries, Evans index and, with `structures`, every label's mL."""
        uncertainty = self.ventricles_sd_ml is not None if uncertainty is None else uncertainty
        out = {f"{k}_ml": f"{self.ventricles_ml[k]:.3f}" for k in REPORT_ROWS}
        if uncertainty:
            out.update({f"{k}_sd_ml": f"{self.ventricles_sd_ml[k]:.3f}" for k in REPORT_ROWS})
        out["lateral_asymmetry_percent"] = f"{self.lateral_asymmetry_percent:.2f}"
        out["left_right_asymmetry_percent"] = f"{self.left_right_asymmetry_percent:.2f}"
        out["evans_index"] = "" if self.evans_index is None else f"{self.evans_index:.4f}"
        if structures:
            out.update({f"{name}_ml": f"{v:.3f}" for name, v in (self.structures_ml or {}).items()})
        return out

    def compare(self, reference: "VolumeReport | None", threshold_percent: float = DISAGREEMENT_PERCENT
                ) -> tuple[list[dict], list[str]]:
        """Rows (structure, ours, sd, theirs, difference mL and %) beside `reference`, and a warning for each
        of COMPARED_ROWS where the two differ by more than `threshold_percent` (and DISAGREEMENT_MIN_ML)."""
        ref_name = (reference.model or "reference") if reference else "reference"
        rows, warnings = [], []

        def add(name, ours, theirs, sd=None):
            rows.append({"structure": name, "ours": ours, "sd": sd, "theirs": theirs,
                         "difference_ml": None if theirs is None or ours is None else ours - theirs,
                         "difference_percent": None if not theirs or ours is None else 100 * (ours - theirs) / theirs})

        for key in REPORT_ROWS:
            ours, theirs = self.ventricles_ml[key], reference.ventricles_ml[key] if reference else None
            name = key.replace("_", " ").capitalize()
            add(name, ours, theirs, self.ventricles_sd_ml[key] if self.ventricles_sd_ml else None)
            if theirs is not None and key in COMPARED_ROWS and \
                    abs(ours - theirs) > max(DISAGREEMENT_MIN_ML, threshold_percent / 100 * theirs):
                warnings.append(f"{name}: {self.model or 'VentSegment'} {ours:.1f} mL vs {ref_name} {theirs:.1f} mL "
                                f"(more than {threshold_percent:g} % apart)")
        add("Lateral asymmetry L-R (%)", self.lateral_asymmetry_percent,
            reference.lateral_asymmetry_percent if reference else None)
        add("Left-right asymmetry (%)", self.left_right_asymmetry_percent,
            reference.left_right_asymmetry_percent if reference else None)
        ref_evans = reference.evans_index if reference else None
        if self.evans_index is not None or ref_evans is not None:
            add("Evans index", self.evans_index, ref_evans)
        return rows, warnings


def row_fields(uncertainty: bool = False) -> list[str]:
    """The columns of `VolumeReport.row` (without the structures)."""
    return [*(f"{k}_ml" for k in REPORT_ROWS), *((f"{k}_sd_ml" for k in REPORT_ROWS) if uncertainty else ()),
            "lateral_asymmetry_percent", "left_right_asymmetry_percent", "evans_index"]


def volume_report(labels: Volume, structures: bool = True) -> VolumeReport:
    """The report of one label map (`structures`: with every label's mL, for whole-brain maps)."""
    seg = labels.with_array(to_segmentation(labels.array))
    per_label = label_volumes_ml(seg)
    vents = ventricle_volumes_ml(seg)
    left = vents["left_lateral"] + vents["left_inferior_lateral"]
    right = vents["right_lateral"] + vents["right_inferior_lateral"]
    return VolumeReport(
        source=labels.source,
        voxel_size_mm=[round(float(s), 6) for s in labels.spacing],
        ventricles_ml=vents,
        lateral_asymmetry_percent=asymmetry_percent(vents["left_lateral"], vents["right_lateral"]),
        left_right_asymmetry_percent=asymmetry_percent(left, right),
        evans=evans_index(seg),
        structures_ml={LABEL_BY_ID[i].name: per_label.get(i, 0.0) for i in SEGMENTATION_IDS if i} if structures else None,
    )
