"""ventkit: synthesis and segmentation of the brain's ventricles (the science behind VentSynth)."""

__version__ = "0.1.0"
