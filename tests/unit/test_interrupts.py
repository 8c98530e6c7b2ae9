"""interrupts.held: Ctrl-C-like signals wait for the end of the block."""

import os
import signal

import fixtures
import testtools

from pcie_sched import interrupts


class Interrupted(Exception):
    pass


class TestHeld(testtools.TestCase):

    def setUp(self):
        super().setUp()
        for signum in interrupts.INTERRUPTS:
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        self.raising = []

        def raising(signum, frame):
            self.raising.append(signum)
            raise Interrupted(signum)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, raising)

    def test_signal_in_block_is_delivered_after_it(self):
        reached = []
        with testtools.ExpectedException(Interrupted):
            with interrupts.held():
                os.kill(os.getpid(), signal.SIGTERM)
                reached.append('after the kill')
                # A few bytecodes later, where an unheld handler has run.
                reached.append('end of block')
        self.assertEqual(['after the kill', 'end of block'], reached)
        self.assertEqual([signal.SIGTERM], self.raising)

    def test_handlers_restored_and_first_signal_wins(self):
        before = {signum: signal.getsignal(signum)
                  for signum in interrupts.INTERRUPTS}
        with testtools.ExpectedException(Interrupted):
            with interrupts.held():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
        self.assertEqual(before, {signum: signal.getsignal(signum)
                                  for signum in interrupts.INTERRUPTS})
        self.assertEqual([signal.SIGINT], self.raising)

    def test_no_signal_no_exception(self):
        with interrupts.held():
            done = True
        self.assertTrue(done)
        self.assertEqual([], self.raising)

    def test_exception_in_block_still_restores(self):
        with testtools.ExpectedException(ValueError):
            with interrupts.held():
                raise ValueError('boom')
        self.assertNotEqual(signal.SIG_IGN, signal.getsignal(signal.SIGTERM))
        self.assertTrue(callable(signal.getsignal(signal.SIGTERM)))
        self.assertEqual('raising',
                         signal.getsignal(signal.SIGTERM).__name__)

    def test_default_action_signals_are_left_alone(self):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        seen = {}
        with interrupts.held():
            seen['hup'] = signal.getsignal(signal.SIGHUP)
            seen['quit'] = signal.getsignal(signal.SIGQUIT)
            seen['term'] = signal.getsignal(signal.SIGTERM)
        self.assertEqual(signal.SIG_DFL, seen['hup'])
        self.assertEqual(signal.SIG_IGN, seen['quit'])
        self.assertEqual('hold', seen['term'].__name__)

    def test_outside_main_thread_does_nothing(self):
        # signal.signal refuses with ValueError outside the main thread.
        # Simulated: under nova's eventlet patching (the full test run)
        # threading.Thread is a green thread on the main OS thread.
        def refuse(signum, handler):
            raise ValueError('signal only works in main thread')
        self.useFixture(fixtures.MonkeyPatch('signal.signal', refuse))
        with interrupts.held():
            inside = signal.getsignal(signal.SIGTERM).__name__
        self.assertEqual('raising', inside)
        self.assertEqual([], self.raising)
