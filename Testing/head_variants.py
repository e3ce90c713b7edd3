"""The same head as a scanner may store it: mirrored, turned about each axis, or stored LPS.

Used by the left/right tests and `bench/sides.py`: a rendered label map and its variants, each with the
left and right lateral-ventricle volumes (mL) that its own labels hold.
"""
import numpy as np

from ventkit.anatomy.corpus import brain_center
from ventkit.anatomy.grid import sample_image, sample_labels
from ventkit.io import Volume

TURNS = [(axis, deg) for axis in "xyz" for deg in (15, 30)]


def rotation(axis: str, degrees: float, centre) -> np.ndarray:
    """4x4 RAS rotation about `axis` through `centre`."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    move, back = np.eye(4), np.eye(4)
    move[:3, 3], back[:3, 3] = centre, -np.asarray(centre)
    return move @ r @ back


def mirrored(image: Volume, labels: Volume) -> tuple[Volume, Volume]:
    """The head mirrored left-right in its voxels (a brain with its sides swapped), same header."""
    return image.with_array(image.array[::-1].copy()), labels.with_array(labels.array[::-1].copy())


def turned(image: Volume, labels: Volume, axis: str, degrees: float) -> tuple[Volume, Volume]:
    """The head turned by `degrees` about `axis` through its brain centre, on the same grid."""
    inverse = np.linalg.inv(rotation(axis, degrees, brain_center(labels)))
    chain = [lambda p: inverse[:3, :3] @ p + inverse[:3, 3:4]]
    shape = image.array.shape
    return (image.with_array(sample_image(image, image.affine, shape, chain)),
            labels.with_array(sample_labels(labels, labels.affine, shape, chain, antialias=False)))


def stored_lps(volume: Volume) -> Volume:
    """The same voxels stored with the first two axes reversed (an LPS file), same world positions."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = volume.array.shape[0] - 1, volume.array.shape[1] - 1
    return Volume(volume.array[::-1, ::-1].copy(), volume.affine @ flip, volume.source)


def lateral_ml(labels: Volume) -> tuple[float, float]:
    """Left and right lateral-ventricle volumes (mL) of a 33-label map."""
    return tuple(float((labels.array == k).sum()) * labels.voxel_ml for k in (4, 43))
