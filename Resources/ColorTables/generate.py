"""Regenerate VentSynthLabels.ctbl, the Slicer colour table of the 33 SynthSeg/FreeSurfer labels.

Run from anywhere with ventkit importable:  python Resources/ColorTables/generate.py
The table comes from ventkit.labels, the project's single source of label ids, names and colours.
"""
from pathlib import Path

from ventkit.labels import SEGMENTATION_LABELS, colour_table_lines

HEADER = (f"# VentSynth: the {len(SEGMENTATION_LABELS)} SynthSeg/FreeSurfer labels "
          "(generated from ventkit.labels)")
OUTPUT = Path(__file__).resolve().with_name("VentSynthLabels.ctbl")


def main() -> Path:
    OUTPUT.write_text("\n".join([HEADER, *colour_table_lines()]) + "\n", encoding="utf-8")
    return OUTPUT


if __name__ == "__main__":
    print(f"wrote {main()}")
