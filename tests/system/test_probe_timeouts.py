"""Real boots cut short by a timeout: an error, and nothing cached.

Needs qemu-system-x86 and ovmf (bindep.txt). q35 + OVMF prints nothing
on the serial console for its first ~30 s with 232 ports, so a boot
timeout of a few seconds cuts every boot short: before the fix,
``find-max --timeout 5`` bisected down to the count that happened to
boot in time (29) and cached it.
"""

import contextlib
import io
import os

import fixtures
import testtools

from pcie_sched.cmd import main
from pcie_sched import probe
from tests import ctrl_c
from tests.system import leftovers

#: Short enough that no OVMF boot here meets it (even one port takes
#: ~8 s under TCG), so the test costs two boots of this long.
_TOO_SHORT = 3


class TestFindMaxTimeout(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(300, gentle=True))
        self.useFixture(ctrl_c.CtrlCRaises())
        self.cache = self.useFixture(fixtures.TempDir()).path
        self.temp_root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch('tempfile.tempdir',
                                             self.temp_root))
        self.addCleanup(main.load_config, [])

    def test_cli_find_max_cut_short_exits_2_and_caches_nothing(self):
        # The CLI refuses --timeout below what a real boot meets; lowered
        # here to stand for a host too slow for the timeout it was given.
        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.conf.probe.MIN_BOOT_TIMEOUT', 1.0))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main.main([
                'probe', '--find-max', '--no-cache', '--arch', 'x86_64',
                '--machine', 'q35', '--firmware', 'uefi', '--timeout',
                str(_TOO_SHORT), '--cache-dir', self.cache, '--format',
                'json'])
        message = err.getvalue()
        self.assertEqual(2, status, message)
        self.assertEqual('', out.getvalue())
        model = probe.model_capacity('x86_64', 'q35', 'uefi')
        for text in (f'ports={model.max_ports}: the boot timed out',
                     f'no verdict within {_TOO_SHORT}s', '--timeout',
                     '[pcie_sched_probe] boot_timeout', 'at least 60s',
                     'nothing cached'):
            self.assertIn(text, message)
        self.assertEqual([], [name for name in os.listdir(self.cache)
                              if name.startswith(('find-max-', '.'))])
        self.assertIsNone(probe.load_cached_max('x86_64', 'q35', 'uefi',
                                                self.cache))
        self.assertEqual([], leftovers.probe_processes(self.temp_root))
        self.assertEqual([], leftovers.probe_temp_dirs(self.temp_root))
