"""`ventkit` command line: parse arguments, call the API, print results. Each command group is a module of
this package holding its commands beside their parsers; this one assembles them and runs one command."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from contextlib import contextmanager

from ..errors import VentkitError, VentkitWarning
from ..progress import check_terminated, clear_termination, request_termination
from . import corpus, measure, synth, train


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (their arguments are checked as they are parsed)."""
    p = argparse.ArgumentParser(prog="ventkit", description="Synthesis and segmentation of the brain's ventricles "
                                "(the science of the VentSynth and VentSegment Slicer modules).")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (measure, corpus, train, synth):
        group.add_commands(sub)
    return p


def _interrupt(signum, frame):
    request_termination()
    raise KeyboardInterrupt


def _default_sigterm_in_child() -> None:
    """A process forked while `_interrupt` is installed (nnU-Net's worker pools) dies on SIGTERM again:
    its handler would run only in its main thread, and a worker blocked on a queue lock whose signal
    went to another thread never ran it, so `Pool.terminate` waited for it forever (a hung test run)."""
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (the Slicer panels' Cancel) unwinds like Ctrl-C, so that temporary files are removed;
    the previous handler comes back afterwards (for callers of `main` in the same process)."""
    stops = [signal.SIGTERM] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])  # Windows: CTRL_BREAK
    previous = {s: signal.signal(s, _interrupt) for s in stops}
    try:
        yield
        check_terminated()  # the handler's exception was swallowed after the last loop item
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        clear_termination()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """ventkit's own warnings as one line each ("ventkit: warning: ..."); others as Python shows them."""
    if issubclass(category, VentkitWarning):
        print(f"ventkit: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv=None) -> int:
    """Run one command; returns its exit status (2: bad arguments or input, 130: interrupted)."""
    warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the bad argument
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with _terminate_as_interrupt():
            args.func(args)
            sys.stdout.flush()
    except BrokenPipeError:  # `ventkit volumes --json | head -1`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except VentkitError as exc:
        print(f"ventkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ventkit: interrupted; finished files are complete, unfinished ones were not written", file=sys.stderr)
        return 130
    return 0
