"""A second process keeping one core busy while a benchmark row runs: the
"other core busy" condition of the bench (a user's machine is rarely idle).
The spinner is a plain Python busy loop at normal priority, started before
the row and killed after it."""
import contextlib
import subprocess
import sys


@contextlib.contextmanager
def busy_core(enabled=True):
    if not enabled:
        yield
        return
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        p.kill()
        p.wait()
