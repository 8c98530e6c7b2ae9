"""Ctrl-C raises KeyboardInterrupt in this process and in its children.

A process started in the background by a non-interactive shell (a CI
runner, ``nohup``, ``cmd &``) inherits SIGINT ignored, and Python then
installs no handler of its own: Ctrl-C does nothing there, nor in any
child it starts. A test about what Ctrl-C does has to say which Ctrl-C
it means instead of inheriting whatever its runner had.
"""

import signal

import fixtures


class CtrlCRaises(fixtures.Fixture):
    """SIGINT runs Python's own handler for the test, then is restored.

    A Python-level handler also resets to the default action in children
    on exec, so a ``pcie-sched probe`` started by the test gets Python's
    KeyboardInterrupt for SIGINT as it would from a terminal.
    """

    def _setUp(self):
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.addCleanup(signal.signal, signal.SIGINT, previous)
