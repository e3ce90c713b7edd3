"""The bad-input suite from a user's shell: every case of Testing/bad_inputs.py through `python -m ventkit`.

    python bench/reliability.py [--model-dir Resources/Models/ventsegment_augmented]

Counts the kinds of input tried, clean errors (the expected exit status and a one-line reason), tracebacks,
silent wrong results (exit 0 where an error was due, or an error where a result was), and partial files
(anything left in the case's output folder after an error), and lists every case that is not clean.
Issue 30's target: 0 tracebacks, 0 silent wrong results, 0 partial files.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))

from bad_inputs import CASES, WARNED, Inputs, files_under, stderr_is_clean  # noqa: E402
from ventkit.anatomy.subjects import default_label_dir, list_subjects  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=str(ROOT / "Resources" / "Models" / "ventsegment_augmented"))
    args = ap.parse_args()
    labels = list_subjects(default_label_dir())["training_seg_01"]
    counts = {"clean": 0, "traceback": 0, "silent wrong": 0, "partial files": 0}
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, case in enumerate(CASES + WARNED):
            inputs = Inputs(Path(tmp) / f"case{k}", Path(args.model_dir), labels)
            inputs.root.mkdir()
            run = subprocess.run([sys.executable, "-m", "ventkit", *case.argv(inputs)], capture_output=True, text=True,
                                 cwd=inputs.root)
            if "Traceback" in run.stderr:
                kind = "traceback"
            elif (run.returncode == 0) != (case.code == 0) or not stderr_is_clean(run.stderr, case.message):
                kind = "silent wrong"
            elif case.code and files_under(inputs.out):
                kind = "partial files"
            else:
                kind = "clean"
            counts[kind] += 1
            if kind != "clean":
                problems.append(f"  {case.name}: {kind} (exit {run.returncode}): {run.stderr.strip()[-300:]}")
            print(f"{case.name:<44}{kind:<15}exit {run.returncode}", flush=True)
    print(f"\nkinds of input tried: {len(CASES) + len(WARNED)} ({len(CASES)} bad, {len(WARNED)} odd but usable)")
    for kind, n in counts.items():
        print(f"{kind:<16}{n}")
    if problems:
        print("\nnot clean:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
