"""Writers for nnU-Net v2 raw datasets (`dataset.json`, `imagesTr`, `labelsTr`, `imagesTs`, `labelsTs`).

Each case is written atomically file by file and described in `meta/<case>.json`, so an interrupted
build keeps only whole cases and can be resumed; `dataset.json` and `cases.csv` are written last.
"""
from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io import Volume, write_text, write_volume
from ..labels import NNUNET_CLASS_NAMES, NNUNET_IGNORE, NNUNET_VENTRICLE_CLASSES

FILE_ENDING = ".nii.gz"


def ventricle_classes(segmentation: np.ndarray) -> np.ndarray:
    """33-label segmentation -> consecutive nnU-Net classes 0..6 (ventricles only)."""
    lut = np.zeros(int(segmentation.max()) + 1 if segmentation.size else 1, np.uint8)
    for fs_id, cls in NNUNET_VENTRICLE_CLASSES.items():
        if fs_id < lut.size:
            lut[fs_id] = cls
    return lut[segmentation]


def uncertain_boundary(classes: np.ndarray, band: int) -> np.ndarray:
    """`classes` with the voxels within `band` voxels of the ventricles' outer boundary, on either side,
    set to NNUNET_IGNORE: the boundary of a label map drawn by another segmenter is a convention of that
    segmenter (SAMSEG's lies further out than FreeSurfer's aseg), so training takes the interior and the
    surroundings from it and the boundary from exactly labelled cases."""
    if band < 1:
        return classes
    ventricles = classes > 0
    structure = ndimage.generate_binary_structure(3, 1)
    outside = ndimage.binary_dilation(ventricles, structure, band) & ~ventricles
    inside = ventricles & ~ndimage.binary_erosion(ventricles, structure, band, border_value=1)
    out = classes.copy()
    out[outside | inside] = NNUNET_IGNORE
    return out


def nnunet_labels(ignore: bool) -> dict[str, int]:
    """`dataset.json`'s "labels": the ventricle classes, and nnU-Net's "ignore" label when `ignore`."""
    return {**NNUNET_CLASS_NAMES, "ignore": NNUNET_IGNORE} if ignore else dict(NNUNET_CLASS_NAMES)


def case_metas(root: str | Path) -> list[dict]:
    """The meta (`meta/<case>.json`, written last) of every finished case of a dataset folder, in order."""
    folder = Path(root) / "meta"
    metas = sorted(m for m in folder.glob("*.json") if not m.name.startswith(".")) if folder.is_dir() else []
    return [json.loads(m.read_text()) for m in metas]  # a leading dot: a meta file being written


class NnUNetDatasetWriter:
    """Writes cases into one nnU-Net v2 raw dataset folder.

    Args:
        root: the dataset folder; created when missing, must not be a file or an empty path.
        description: free text for `dataset.json`'s "description"; a string.
        full_labels: also write the 33-label maps (`labelsFullTr`, `labelsFullTs`) beside the ventricle classes.
        ignore_band: in training cases, mark the voxels within this many voxels of the ventricles' boundary
            "ignore" (`uncertain_boundary`), for labels drawn by another segmenter; 0: none. Test cases
            keep their labels whole.
    """

    def __init__(self, root: str | Path, description: str = "", full_labels: bool = True, ignore_band: int = 0):
        if not str(root):
            raise ValueError("root must be a folder path, got an empty path")
        if Path(root).exists() and not Path(root).is_dir():
            raise ValueError(f"root must be a folder, got the file {root}")
        if not isinstance(description, str):
            raise ValueError(f"description must be a string, got {type(description).__name__}")
        self.root = Path(root)
        self.description = description
        if not isinstance(ignore_band, int) or ignore_band < 0:
            raise ValueError(f"ignore_band must be a whole number of voxels >= 0, got {ignore_band!r}")
        self.full_labels = full_labels
        self.ignore_band = ignore_band
        (self.root / "meta").mkdir(parents=True, exist_ok=True)

    @classmethod
    def reopen(cls, root: str | Path) -> "NnUNetDatasetWriter":
        """The writer of a folder built by ventkit, with the ignore band its build recorded (`build.json`)."""
        record = Path(root) / "build.json"
        band = json.loads(record.read_text()).get("ignore_band", 0) if record.is_file() else 0
        return cls(root, ignore_band=band)

    def claim(self, settings: dict, force: bool = False) -> None:
        """Record the build's `settings` (`build.json`); a folder built with other settings is refused, so
        that a resumed build never mixes cases of two recipes, unless `force`, which deletes its cases first."""
        record = self.root / "build.json"
        settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
        if record.is_file():
            before = json.loads(record.read_text())
            if before != settings:
                changed = ", ".join(f"{k} {before.get(k)!r} -> {settings.get(k)!r}"
                                    for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k))
                if not force:
                    raise InputError(self.root, f"was built with other settings ({changed}): resume with the same "
                                                "ones, choose a new --out, or pass --force to delete its cases "
                                                "and start again")
                for folder in ("meta", "imagesTr", "labelsTr", "labelsFullTr", "imagesTs", "labelsTs",
                               "labelsFullTs"):
                    for f in (self.root / folder).glob("*"):
                        f.unlink()
                for f in ("dataset.json", "cases.csv"):
                    (self.root / f).unlink(missing_ok=True)
        write_text(record, json.dumps(settings, indent=1))

    def _paths(self, case_id: str, test: bool) -> dict[str, Path]:
        s = "Ts" if test else "Tr"
        p = {"image": self.root / f"images{s}" / f"{case_id}_0000{FILE_ENDING}",
             "labels": self.root / f"labels{s}" / f"{case_id}{FILE_ENDING}",
             "meta": self.root / "meta" / f"{case_id}.json"}
        if self.full_labels:
            p["full"] = self.root / f"labelsFull{s}" / f"{case_id}{FILE_ENDING}"
        return p

    def has_case(self, case_id: str, test: bool = False) -> bool:
        return all(p.is_file() for p in self._paths(case_id, test).values())

    def add_case(self, case_id: str, image: Volume, segmentation: Volume, info: dict, test: bool = False) -> None:
        """Write image, ventricle classes (and the 33-label map); the meta file last marks it complete."""
        paths = self._paths(case_id, test)
        write_volume(image, paths["image"], dtype=np.float32)
        classes = ventricle_classes(segmentation.array)
        if not test:
            classes = uncertain_boundary(classes, self.ignore_band)
        write_volume(segmentation.with_array(classes), paths["labels"], dtype=np.uint8)
        if self.full_labels:
            write_volume(segmentation, paths["full"], dtype=np.int16)
        write_text(paths["meta"], json.dumps({"case_id": case_id, "test": test, **info}, indent=1))

    def remove_partial(self) -> None:
        """Delete temporary files of interrupted writes, and the files of cases cut off before their meta."""
        for tmp in self.root.glob("*/.*.part*"):
            tmp.unlink(missing_ok=True)
        complete = {m.stem for m in (self.root / "meta").glob("*.json") if not m.name.startswith(".")}
        for folder in ("imagesTr", "labelsTr", "labelsFullTr", "imagesTs", "labelsTs", "labelsFullTs"):
            for f in (self.root / folder).glob(f"*{FILE_ENDING}"):
                case_id = f.name[: -len(FILE_ENDING)]
                if folder.startswith("images"):
                    case_id = case_id.removesuffix("_0000")
                if case_id not in complete:
                    f.unlink()

    def cases(self) -> list[dict]:
        """The meta of every case whose files are all in place."""
        return [info for info in case_metas(self.root) if self.has_case(info["case_id"], info["test"])]

    def dataset_json(self, name: str, cases: list[dict]) -> dict:
        """nnU-Net's `dataset.json` for `cases` (meta dicts)."""
        return {
            "name": name,
            "description": self.description,
            "channel_names": {"0": "T1"},
            "labels": nnunet_labels(self.ignore_band > 0),
            "numTraining": sum(not c["test"] for c in cases),
            "numTest": sum(c["test"] for c in cases),
            "file_ending": FILE_ENDING,
            "reference": "ventkit anatomy corpus rendered from SynthSeg label maps (Apache-2.0)",
        }

    def finish(self, name: str) -> dict:
        """Write `dataset.json` and `cases.csv` for every complete case; return the dataset.json dict."""
        cases = self.cases()
        dataset = self.dataset_json(name, cases)
        write_text(self.root / "dataset.json", json.dumps(dataset, indent=1))
        keys = sorted({k for c in cases for k in c})
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(cases)
        write_text(self.root / "cases.csv", buf.getvalue())
        return dataset
