"""Generators of labeled brain MRI: the volume-guided mask model and (later) the SPADE image model."""
