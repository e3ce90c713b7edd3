"""VentSegment's science: nnU-Net ventricle segmenters, the SynthSeg reference, volumes per scan.

`segment.load_segmenter(name)` gives a segmenter; `segment.segment_file(path, out_dir, segmenter)` writes
the ventricle label map in the scan's own grid plus its volumes (JSON and CSV). Never imports `synthesis`.
"""
