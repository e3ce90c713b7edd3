"""SIGTERM during a `ventkit` command unwinds like Ctrl-C; afterwards, and in forked workers, it is as before."""
import os
import signal

from ventkit import cli


def test_sigterm_handler_is_scoped_and_forked_workers_die_on_sigterm(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    with cli._terminate_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is cli._interrupt
        pid = os.fork()
        if pid == 0:  # a worker forked meanwhile (as nnU-Net's pools are): SIGTERM must kill it
            os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert signal.getsignal(signal.SIGTERM) is previous
    assert cli.main(["volumes", str(tmp_path / "missing.nii.gz")]) == 2  # an error path restores it too
    assert signal.getsignal(signal.SIGTERM) is previous
