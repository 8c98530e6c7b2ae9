"""Bad command lines are usage errors, refused before any boot or call.

Every case runs ``pcie-sched`` through ``main()`` as the console script
does, with QEMU, the probe and Placement replaced by traps: a refusal
that came after a boot or a connection fails the test.
"""

import contextlib
import io
import subprocess
from unittest import mock

import fixtures
import testscenarios
import testtools

from pcie_sched.cmd import main
from pcie_sched import placement
from pcie_sched import probe
from pcie_sched import topology

load_tests = testscenarios.load_tests_apply_scenarios


def run_main(argv):
    """(exit status, stdout, stderr) of ``pcie-sched argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main.main(list(argv))
        except SystemExit as exc:  # argparse's own refusals
            status = exc.code
    return status, out.getvalue(), err.getvalue()


class Traps(fixtures.Fixture):
    """Boots, QEMU runs and Placement connections, all recorded."""

    def _setUp(self):
        self.calls = []
        for target in (probe.boot, probe.find_max, probe.model_capacity,
                       placement.connect, subprocess.Popen):
            name = f'{target.__module__}.{target.__qualname__}'
            self.useFixture(fixtures.MockPatch(
                name, side_effect=self._trap(name)))
        # main() parses into the global CONF; leave it as it was.
        self.addCleanup(main.load_config, [])

    def _trap(self, name):
        def trap(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f'{name} called')
        return trap


class TestUsageErrors(testtools.TestCase):

    # (argv, words stderr must hold: the option, the value, what is
    # accepted). Each of these was accepted, or refused without naming
    # all three, before.
    scenarios = [
        ('capacity_negative_guest_devices', dict(
            argv=['capacity', '--vcpus', '1', '--guest-devices', '-5'],
            words=['--guest-devices', "'-5'", 'less than the minimum of 0',
                   'accepted: a whole number from 0 to 255'])),
        ('capacity_guest_devices_not_a_number', dict(
            argv=['capacity', '--guest-devices', 'five'],
            words=['--guest-devices', "'five'", 'not a whole number',
                   'from 0 to 255'])),
        ('capacity_no_vcpus', dict(
            argv=['capacity', '--vcpus', '0'],
            words=['--vcpus', "'0'", 'less than the minimum of 1',
                   'accepted: a whole number, 1 or more'])),
        ('capacity_root_bus_devices', dict(
            argv=['capacity', '--root-bus-devices', '32'],
            words=['--root-bus-devices', "'32'",
                   'greater than the maximum of 31', 'from 0 to 31'])),
        ('capacity_ports_per_slot', dict(
            argv=['capacity', '--ports-per-slot', '4'],
            words=['--ports-per-slot', "'4'", 'accepted: 1 or 8'])),
        ('capacity_unknown_q35_option', dict(
            argv=['capacity', '--machine', 'q35,foo=bar'],
            words=['--machine', "'foo=bar'", 'no machine options on q35'])),
        ('capacity_unknown_virt_option', dict(
            argv=['capacity', '--arch', 'aarch64', '--machine',
                  'virt,gic-version=3'],
            words=['--machine', "'gic-version=3'",
                   'accepted: highmem=on|off, highmem-ecam=on|off'])),
        ('capacity_option_value', dict(
            argv=['capacity', '--arch', 'aarch64', '--machine',
                  'virt,highmem=maybe'],
            words=['--machine', "'highmem=maybe'",
                   'accepted: highmem=on or highmem=off'])),
        ('capacity_q35_newer_than_qemu', dict(
            argv=['capacity', '--machine', 'pc-q35-10.0', '--qemu-version',
                  '7.2'],
            words=['--machine', "'pc-q35-10.0'", 'newer than QEMU 7.2',
                   'accepted: q35 or pc-q35-X.Y with X.Y at most 7.2'])),
        ('capacity_virt_newer_than_qemu', dict(
            argv=['capacity', '--arch', 'aarch64', '--machine', 'virt-8.0',
                  '--qemu-version', '7.2'],
            words=['--machine', "'virt-8.0'", 'newer than QEMU 7.2',
                   'virt-X.Y with X.Y at most 7.2'])),
        ('render_negative_cold_plugged', dict(
            argv=['render', '--ports', '1', '--cold-plugged', '-3'],
            words=['--cold-plugged', "'-3'", 'less than the minimum of 0',
                   'from 0 to 255'])),
        ('render_negative_ports', dict(
            argv=['render', '--ports', '-1'],
            words=['--ports', "'-1'", 'less than the minimum of 0',
                   'from 0 to 255'])),
        ('render_above_the_model', dict(
            argv=['render', '--ports', '100', '--arch', 'aarch64',
                  '--machine', 'virt-2.11'],
            words=['--ports=100', 'maximum of 15', 'ecam-window',
                   'accepted: --ports 0 to 15'])),
        ('render_above_the_model_with_cold_plugged', dict(
            argv=['render', '--ports', '10', '--cold-plugged', '10',
                  '--arch', 'aarch64', '--machine', 'virt-2.12'],
            words=['--ports=10 with --cold-plugged=10', '20 root ports',
                   'maximum of 15', 'accepted: --ports 0 to 5'])),
        ('render_above_the_q35_model', dict(
            argv=['render', '--ports', '230', '--cold-plugged', '3'],
            words=['--ports=230 with --cold-plugged=3', 'maximum of 232',
                   'accepted: --ports 0 to 229'])),
        ('render_unknown_option', dict(
            argv=['render', '--ports', '1', '--machine', 'q35,foo=bar'],
            words=['--machine', "'foo=bar'", 'no machine options on q35'])),
        ('render_newer_than_qemu', dict(
            argv=['render', '--ports', '1', '--machine', 'pc-q35-10.0',
                  '--qemu-version', '7.2'],
            words=['--machine', "'pc-q35-10.0'", 'newer than QEMU 7.2',
                   'at most 7.2'])),
        ('publish_too_many', dict(
            argv=['publish', '--max-ports', '300'],
            words=['--max-ports', "'300'", 'greater than the maximum of 255',
                   'from 0 to 255'])),
        ('publish_negative', dict(
            argv=['publish', '--max-ports', '-1'],
            words=['--max-ports', "'-1'", 'less than the minimum of 0',
                   'from 0 to 255'])),
        ('publish_unknown_option', dict(
            argv=['publish', '--max-ports', '8', '--arch', 'x86_64',
                  '--machine', 'q35,foo=bar'],
            words=['--machine', "'foo=bar'", 'no machine options on q35'])),
        # probe and check share --machine; main() refuses it for them too.
        ('probe_unknown_option', dict(
            argv=['probe', '--ports', '2', '--machine', 'q35,foo=bar'],
            words=['--machine', "'foo=bar'", 'no machine options on q35'])),
        ('probe_find_max_unknown_option', dict(
            argv=['probe', '--find-max', '--arch', 'aarch64', '--machine',
                  'virt,gic-version=3'],
            words=['--machine', "'gic-version=3'", 'highmem=on|off'])),
        ('check_unknown_option', dict(
            argv=['check', '--ports', '2', '--machine', 'q35,foo=bar'],
            words=['--machine', "'foo=bar'", 'no machine options on q35'])),
    ]

    def test_refused_before_any_boot_or_connection(self):
        traps = self.useFixture(Traps())
        status, out, err = run_main(self.argv)
        self.assertEqual(main.EXIT_ERROR, status, err)
        for word in self.words:
            self.assertIn(word, err)
        self.assertEqual([], traps.calls)
        self.assertEqual('', out)


class TestAcceptedAtTheLimits(testtools.TestCase):
    """The refusals above stop exactly where the accepted range ends."""

    scenarios = [
        ('render_model_maximum', dict(
            argv=['render', '--ports', '15', '--arch', 'aarch64',
                  '--machine', 'virt-2.11', '--format', 'qemu'])),
        # What real boots reach (DESIGN.md, measured across versions).
        ('render_virt_2_12_highmem_ecam_on', dict(
            argv=['render', '--ports', '248', '--arch', 'aarch64',
                  '--machine', 'virt-2.12,highmem-ecam=on',
                  '--qemu-version', '8.0', '--format', 'qemu'])),
        ('render_q35_maximum', dict(
            argv=['render', '--ports', '229', '--cold-plugged', '3'])),
        ('capacity_guest_devices_maximum', dict(
            argv=['capacity', '--vcpus', '2', '--guest-devices', '255'])),
        ('capacity_same_version', dict(
            argv=['capacity', '--machine', 'pc-q35-7.2', '--qemu-version',
                  '7.2'])),
        ('capacity_highmem_on', dict(
            argv=['capacity', '--arch', 'aarch64', '--machine',
                  'virt,highmem=on,highmem-ecam=off'])),
    ]

    def test_accepted(self):
        traps = self.useFixture(Traps())
        status, out, err = run_main(self.argv)
        self.assertEqual(main.EXIT_OK, status, err)
        self.assertEqual('', err)
        self.assertNotEqual('', out)
        self.assertEqual([], traps.calls)


class TestExitCodeRule(testtools.TestCase):

    def test_stated_in_help(self):
        status, out, _ = run_main(['--help'])
        self.assertEqual(0, status)
        self.assertIn('exit status, the same for every command:', out)
        for line in ('0    success', '1    the answer is no',
                     '2    no answer: a usage error',
                     'an environment error', '130  interrupted'):
            self.assertIn(line, out)

    def test_placement_failure_is_an_environment_error(self):
        self.addCleanup(main.load_config, [])
        self.useFixture(fixtures.MockPatch(
            'pcie_sched.placement.connect',
            side_effect=placement.PublishError(
                'cloud nowhere: Placement at http://192.0.2.1 unreachable')))
        status, _, err = run_main(['publish', '--max-ports', '8',
                                   '--host', 'compute1'])
        self.assertEqual(main.EXIT_ERROR, status)
        self.assertIn('Placement at http://192.0.2.1 unreachable', err)

    def test_render_plan_that_does_not_fit_is_a_usage_error(self):
        # Past the model's own checks, a plan topology.plan refuses.
        self.addCleanup(main.load_config, [])
        with mock.patch('pcie_sched.topology.plan',
                        side_effect=topology.TopologyError('does not fit')):
            status, _, err = run_main(['render', '--ports', '1'])
        self.assertEqual(main.EXIT_ERROR, status)
        self.assertIn('does not fit', err)
