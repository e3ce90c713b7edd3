"""`ventkit segment`: one scan in, ventricle label map (in the scan's own grid) and volumes out."""
from __future__ import annotations

import csv
import io as _io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError, VentkitError, VentkitWarning
from ..labels import unknown_labels
from ..io import MGH_SUFFIXES, NIFTI_SUFFIXES, NRRD_SUFFIXES, Volume, read_volume, stem_of, suffix_of, write_text, \
    write_volume
from ..paths import models_dir
from ..progress import Callback, track
from ..volumetry import VolumeReport, row_fields, volume_report

SCAN_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES + MGH_SUFFIXES
NNUNET_MODELS = ("augmented", "real", "synthetic")
SYNTHSEG_RECIPE = "synthseg_recipe"
MODELS = (*NNUNET_MODELS, "synthseg", "samseg", SYNTHSEG_RECIPE)
DEFAULT_MODEL = "augmented"
BASELINE_MODELS = ("synthetic", SYNTHSEG_RECIPE)  # the paper's ablation baselines, offered only on request
BRAIN_FOV_MM = (80.0, 600.0)  # each side of a scan that can hold a whole brain
MAX_IN_PLANE_MM = 3.5  # the two finer voxel sides of a scan the models can read
MAX_SLICE_MM = 10.0  # its coarsest voxel side (thick slices)
MAX_INTENSITY = 1e30  # beyond this, float32 normalisation overflows
LABEL_MAP_VALUES = 64  # an "image" with at most this many distinct values, all FreeSurfer labels, is a label map


class Segmenter(Protocol):
    description: str

    def segment(self, volume: Volume) -> Volume: ...


def model_folder(name: str) -> Path:
    return models_dir() / f"ventsegment_{name}"


def shipped_models(baselines: bool = True) -> list[str]:
    """The nnU-Net models whose weights are shipped, the default first; the paper's ablation baselines
    (BASELINE_MODELS, not for measuring patients) only with `baselines`."""
    return [m for m in (*NNUNET_MODELS, SYNTHSEG_RECIPE) if (baselines or m not in BASELINE_MODELS)
            and (model_folder(m) / "model_card.json").is_file()]


def load_segmenter(model: str | None = None, device: str = "auto", notify=print,
                   folder: str | Path | None = None, keep_islands: bool = False) -> Segmenter:
    """A segmenter by name (default: DEFAULT_MODEL); `synthseg` is the installed SynthSeg, else
    ventkit's SynthSeg-recipe baseline; `samseg` is an installed SAMSEG (`ventkit install-samseg`).

    With `folder`, the nnU-Net model in that folder instead of a shipped one (`model` is then only a name).
    `keep_islands`: ventkit's nnU-Net models keep every connected component (see `keep_largest_components`).
    """
    from .predictor import VentricleSegmenter
    from .references import InstalledSamseg, InstalledSynthSeg, find_samseg, find_synthseg

    model = model or DEFAULT_MODEL
    if folder is not None:
        seg = VentricleSegmenter(folder, device, keep_islands=keep_islands)
        seg.description = f"nnU-Net model {folder}"
        return seg
    if model not in MODELS:
        raise InputError("model", f"unknown model '{model}' (choose from {', '.join(MODELS)})")
    if model == "samseg":
        command = find_samseg()
        if not command:
            raise VentkitError("SAMSEG is not installed: run `ventkit install-samseg` once (it gets an environment "
                               "of its own, since it needs numpy<2), or set $VENTKIT_SAMSEG to its run_samseg")
        return InstalledSamseg(command)
    if model == "synthseg" and find_synthseg():
        return InstalledSynthSeg(find_synthseg())
    if model in ("synthseg", SYNTHSEG_RECIPE):
        if model == "synthseg":
            notify("mri_synthseg not found: using ventkit's SynthSeg-recipe baseline (a reproduction of the "
                   "SynthSeg training method, not SynthSeg's weights)")
        seg = VentricleSegmenter(model_folder(SYNTHSEG_RECIPE), device, keep_islands=keep_islands)
        seg.description = "SynthSeg-recipe baseline (ventkit reproduction, not SynthSeg's weights)"
        return seg
    seg = VentricleSegmenter(model_folder(model), device, keep_islands=keep_islands)
    seg.description = f"VentSegment nnU-Net ({model})"
    return seg


@dataclass
class SegmentationResult:
    labels: Volume
    report: VolumeReport
    files: dict[str, Path]


def check_brain_field_of_view(volume: Volume) -> None:
    """Refuse scans whose field of view cannot hold a whole brain (a slab, a single slice, a body scan)."""
    fov = volume.spacing * np.array(volume.array.shape)
    lo, hi = BRAIN_FOV_MM
    if (fov < lo).any() or (fov > hi).any():
        raise InputError(volume.source, f"field of view {np.round(fov).astype(int).tolist()} mm cannot be a "
                                        f"whole-brain scan (each side must be {lo:g}-{hi:g} mm)")


def check_scan(volume: Volume) -> None:
    """Refuse what cannot be a brain MRI for these models, each with its reason: a field of view that
    cannot hold a brain, voxels too coarse to show the ventricles, intensities that overflow, a label map."""
    check_brain_field_of_view(volume)
    fine, middle, coarse = np.sort(volume.spacing)
    if middle > MAX_IN_PLANE_MM or coarse > MAX_SLICE_MM:
        raise InputError(volume.source, f"voxels of {np.round(volume.spacing, 2).tolist()} mm are too coarse to "
                                        f"measure ventricles (at most {MAX_IN_PLANE_MM:g} mm in-plane and "
                                        f"{MAX_SLICE_MM:g} mm slices)")
    top = float(np.abs(volume.array).max())
    if top > MAX_INTENSITY:
        raise InputError(volume.source, f"intensities reach {top:.3g}: beyond what the normalisation can handle "
                                        "(a corrupt file, or rescale the image)")
    sample = np.unique(volume.array[::3, ::3, ::3])
    if len(sample) <= LABEL_MAP_VALUES and np.array_equal(sample, np.round(sample)) and not unknown_labels(sample):
        raise InputError(volume.source, f"this is a label map ({len(sample)} distinct FreeSurfer label values), "
                                        "not an MRI: give the scan itself")


def check_uncertainty(segmenter: Segmenter) -> None:
    """Refuse `--uncertainty` for a segmenter that cannot give one (the installed references)."""
    if not hasattr(segmenter, "segment_with_uncertainty"):
        raise InputError("uncertainty", f"{segmenter.description} gives no uncertainty (only VentSegment's "
                                          f"nnU-Net models do)")


def uncertainty_of(segmenter: Segmenter, passes: list[dict]) -> tuple[dict, dict]:
    """Each volume's SD (mL) over the test-time passes, times the model's calibrated scale (its card's
    `uncertainty.sd_scale`, fitted on renders of training subjects), and how it was found."""
    calibration = getattr(segmenter, "card", {}).get("uncertainty", {})
    scale = float(calibration.get("sd_scale", 1.0))
    sd = {k: scale * float(np.std([p[k] for p in passes], ddof=1)) for k in passes[0]}
    method = {"method": f"test-time mirroring, {len(passes)} passes", "sd_scale": scale,
              "calibrated": "sd_scale" in calibration, **({"fitted_on": calibration["fitted_on"]}
                                                        if "fitted_on" in calibration else {})}
    return sd, method


def segment_volume(volume: Volume, segmenter: Segmenter, uncertainty: bool = False) -> tuple[Volume, VolumeReport]:
    """Segment `volume`; the report carries the volumes and every warning raised on the way (uncertain
    sides among them). With `uncertainty`, each volume also gets an SD (`ventricles_sd_ml`, see
    `uncertainty_of`)."""
    check_scan(volume)
    if uncertainty:
        check_uncertainty(segmenter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VentkitWarning)
        if uncertainty:
            labels, passes = segmenter.segment_with_uncertainty(volume)
        else:
            labels = segmenter.segment(volume)
    if labels.array.shape != volume.array.shape or not np.allclose(labels.affine, volume.affine):
        raise VentkitError(f"{segmenter.description} returned a map off the scan's grid")
    report = volume_report(labels, structures=False)
    report.model = segmenter.description
    if uncertainty:
        report.ventricles_sd_ml, report.uncertainty = uncertainty_of(segmenter, passes)
    report.warnings = [str(w.message) for w in caught if issubclass(w.category, VentkitWarning)]
    if report.total_ml == 0:
        raise VentkitError(f"{volume.source}: {segmenter.description} found no ventricles, which every brain has: "
                           "not a brain MRI, a contrast or field of view the model cannot read, or damaged "
                           "weights; nothing was written")
    return labels, report


def output_stems(paths: list[str | Path]) -> list[str]:
    """An output name per scan: its file name's stem, or where stems collide (`*/mri/orig.mgz`), the stem
    with as many parent folders as make it unique (`sub-01_mri_orig`), or its whole name (`a.nii.gz` beside
    `a.nrrd`: `a_nii_gz`, `a_nrrd`)."""
    paths = [Path(p).absolute() for p in paths]
    if len(set(paths)) < len(paths):
        raise InputError(", ".join(map(str, paths)), "the same scan is given twice")
    for depth in range(max(len(p.parts) for p in paths)):
        stems = ["_".join([*p.parent.parts[len(p.parent.parts) - depth:], stem_of(p)]) for p in paths]
        if len(set(stems)) == len(stems):
            return stems
    return ["_".join([*p.parent.parts[1:], p.name.replace(".", "_")]) for p in paths]


def segment_file(path: str | Path, out_dir: str | Path, segmenter: Segmenter,
                 uncertainty: bool = False, stem: str | None = None) -> SegmentationResult:
    """Segment one scan and write `<stem>_ventricles.nii.gz`, `_volumes.json` and `_volumes.csv` (stem: the
    file's, by default); warnings about the file's header join the report's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VentkitWarning)
        volume = read_volume(path)
    labels, report = segment_volume(volume, segmenter, uncertainty)
    report.warnings = [str(w.message) for w in caught if issubclass(w.category, VentkitWarning)] + report.warnings
    out_dir, stem = Path(out_dir), stem or stem_of(path)
    files = {"labels": out_dir / f"{stem}_ventricles.nii.gz", "json": out_dir / f"{stem}_volumes.json",
             "csv": out_dir / f"{stem}_volumes.csv"}
    # everything is computed before the first write; each write is atomic
    write_volume(labels, files["labels"], dtype=np.int16)
    write_text(files["json"], json.dumps(report.to_dict(), indent=1))
    write_text(files["csv"], report.csv())
    return SegmentationResult(labels, report, files)


def segment_folder(folder: str | Path, out_dir: str | Path, csv_path: str | Path, segmenter: Segmenter,
                   callback: Callback | None = None, quiet: bool = True,
                   uncertainty: bool = False) -> int:
    """Segment every scan in `folder` into `out_dir`; one CSV row of volumes per scan (a scan that cannot be
    segmented gets its reason in the `error` column, and the others go on); returns the count segmented."""
    scans = sorted(p for p in Path(folder).iterdir() if suffix_of(p) in SCAN_SUFFIXES)
    if not scans:
        raise InputError(folder, "no NIfTI, NRRD or MGZ scans")
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["scan", *row_fields(uncertainty), "error"])
    w.writeheader()
    done = 0
    for scan, stem in track(list(zip(scans, output_stems(scans))), len(scans), "segment", callback, quiet):
        try:
            report = segment_file(scan, out_dir, segmenter, uncertainty, stem).report
        except VentkitError as exc:
            w.writerow({"scan": scan.name, "error": str(exc)})
            continue
        done += 1
        w.writerow({"scan": scan.name, **report.row(uncertainty)})
    write_text(csv_path, buf.getvalue())
    return done
