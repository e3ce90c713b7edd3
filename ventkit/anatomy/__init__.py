"""The anatomy corpus: real label maps, deformations, ventricle resizing, rendering and datasets."""
