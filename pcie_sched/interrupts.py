"""Hold Ctrl-C back where being cut in two would leave something behind.

Python runs a signal's handler between any two bytecodes, so the
KeyboardInterrupt that Ctrl-C (and, in ``pcie-sched probe``, SIGTERM,
SIGHUP and SIGQUIT) raises can land inside ``subprocess.Popen`` after
the fork, or halfway through a cleanup. :func:`held` defers it to the
end of a short block instead.
"""

import contextlib
import signal
import typing as ty

#: Signals whose Python handlers unwind the probe (Ctrl-C's SIGINT, and
#: what ``pcie-sched probe`` turns into it); see :func:`held`.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextlib.contextmanager
def held() -> ty.Iterator[None]:
    """Hold back interrupting signals until the block ends, then deliver.

    Only signals with a Python handler are held: their handler raises
    (KeyboardInterrupt) wherever the interpreter happens to be, and some
    places must not be cut in two. Signals with the default action still
    end the process at once. The first signal held is delivered again
    through its own handler on leaving the block. Outside the main
    thread, where Python runs no signal handlers, this does nothing.
    """
    pending = []
    saved = {}

    def hold(signum, frame):
        pending.append(signum)

    try:
        try:
            for signum in INTERRUPTS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    signal.signal(signum, hold)
                    saved[signum] = handler
        except ValueError:
            # Not the main thread, the only one where Python runs (and
            # may set) handlers: nothing interrupts this thread's block.
            # Asked of the signal module rather than of threading, which
            # eventlet (nova's services) replaces with green threads.
            pass
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])
