"""The CLI reads the config files it is given, and only those."""

import contextlib
import io
import os

import fixtures
import testscenarios
import testtools

from pcie_sched.cmd import main
from pcie_sched.cmd import probe as probe_cmd
from pcie_sched import conf
from pcie_sched import probe
from tests import as_user

load_tests = testscenarios.load_tests_apply_scenarios


class TestConfigFiles(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        # main() parses into the global CONF; leave it as we found it.
        self.addCleanup(main.load_config, [])

    def conf_file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, 'w') as handle:
            handle.write(text)
        return path

    def run_main(self, *argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            status = main.main(list(argv))
        return status, err.getvalue()

    def test_cache_dir_comes_from_the_config_file(self):
        nova_conf = self.conf_file(
            'nova.conf', '[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n'
                         '[pcie_sched_probe]\ncache_dir = /srv/ports//x/\n')
        args = main.build_parser().parse_args(
            ['probe', '--find-max', '--config-file', nova_conf])
        main.load_config(args.config_sources)
        self.assertEqual('/srv/ports/x', probe.default_cache_dir())
        self.assertEqual('/srv/ports/x', probe_cmd.cache_dir(args))

    def test_later_sources_win_in_the_order_given(self):
        first = self.conf_file('a.conf',
                               '[pcie_sched_probe]\ncache_dir = /a\n')
        confd = os.path.join(self.dir, 'conf.d')
        os.mkdir(confd)
        with open(os.path.join(confd, 'b.conf'), 'w') as handle:
            handle.write('[pcie_sched_probe]\ncache_dir = /b\n')
        args = main.build_parser().parse_args(
            ['check', '--config-dir', confd, '--config-file', first])
        self.assertEqual(['--config-dir', confd, '--config-file', first],
                         args.config_sources)
        main.load_config(args.config_sources)
        self.assertEqual('/a', probe.default_cache_dir())

    def test_no_file_is_read_unless_given(self):
        main.load_config([])
        self.assertEqual(conf.probe.DEFAULT_CACHE_DIR,
                         probe.default_cache_dir())
        self.assertEqual([], conf.CONF.config_file)

    def test_relative_cache_dir_is_refused_with_option_and_value(self):
        bad = self.conf_file('bad.conf',
                             '[pcie_sched_probe]\ncache_dir = cache/here\n')
        status, err = self.run_main('probe', '--find-max',
                                    '--config-file', bad)
        self.assertEqual(2, status)
        self.assertIn("[pcie_sched_probe] cache_dir='cache/here'", err)
        self.assertIn('accepted: an absolute directory path', err)
        self.assertIn(bad, err)

    def test_missing_config_file_is_named(self):
        missing = os.path.join(self.dir, 'absent.conf')
        status, err = self.run_main('capacity', '--config-file', missing)
        self.assertEqual(2, status)
        self.assertIn(missing, err)
        self.assertIn('accepted: readable oslo.config files', err)

    def test_cache_dir_option_is_made_absolute(self):
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.dir)
        args = main.build_parser().parse_args(
            ['probe', '--ports', '2', '--cache-dir', 'c'])
        self.assertEqual(os.path.join(os.path.realpath(self.dir), 'c'),
                         probe_cmd.cache_dir(args))


class TestPublishMachineType(testtools.TestCase):
    """[libvirt] hw_machine_type is read as nova reads it."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def machine(self, value, arch='x86_64'):
        from pcie_sched.cmd import publish
        path = os.path.join(self.dir, 'nova.conf')
        with open(path, 'w') as handle:
            handle.write(f'[libvirt]\nhw_machine_type = {value}\n')
        return publish.nova_machine_type(['--config-file', path], arch)

    def test_entries_as_nova_matches_them(self):
        self.assertEqual('pc-q35-7.2',
                         self.machine('aarch64=virt, x86_64=pc-q35-7.2'))
        self.assertEqual('virt', self.machine('x86_64=q35,aarch64=virt',
                                              arch='aarch64'))
        # First entry for the arch wins; one without a machine is skipped.
        self.assertEqual('q35', self.machine('x86_64=q35,x86_64=pc'))
        self.assertEqual('q35', self.machine('x86_64=,x86_64=q35'))
        self.assertIsNone(self.machine('aarch64=virt'))
        self.assertIsNone(self.machine(''))

    def test_no_file_no_machine(self):
        from pcie_sched.cmd import publish
        self.assertIsNone(publish.nova_machine_type([], 'x86_64'))

    def test_options_are_not_registered_on_the_global_conf(self):
        # nova registers [libvirt] hw_machine_type on the same cfg.CONF
        # and refuses a different duplicate; publish must not add one.
        registered = conf.CONF._groups.get('libvirt')
        before = dict(registered._opts) if registered else None
        self.machine('x86_64=q35')
        after = conf.CONF._groups.get('libvirt')
        self.assertEqual(before, dict(after._opts) if after else None)


class TestUnwritableDefault(testtools.TestCase):
    """A user who cannot write the default cache is told, not failed."""

    def test_fallback_is_announced(self):
        # Any non-root user cannot write /var/cache: check directly.
        uid_runs = 'nobody' if os.geteuid() == 0 else None
        self.addCleanup(main.load_config, [])
        home = self.useFixture(fixtures.TempDir()).path
        os.chmod(home, 0o777)

        def choose():
            os.environ['HOME'] = home
            main.load_config([])
            args = main.build_parser().parse_args(['check', '--ports', '1'])
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                chosen = probe_cmd.cache_dir(args)
            return f'{chosen}\n{err.getvalue()}'
        chosen, _, warning = as_user.run_as(uid_runs, choose).partition('\n')
        if os.access(conf.probe.DEFAULT_CACHE_DIR, os.W_OK) and not uid_runs:
            self.fail('run this test as root or as a user who cannot '
                      'write /var/cache/pcie-sched')
        self.assertEqual(os.path.join(home, '.cache', 'pcie-sched'), chosen)
        self.assertIn("cache_dir='/var/cache/pcie-sched' (the default) is "
                      "not writable", warning)
        self.assertIn('nova-compute does not read', warning)


class TestCheckRefusesImpossibleCounts(testtools.TestCase):

    scenarios = [
        ('negative_ports', dict(argv=['--ports', '-2'],
                                said='--ports=-2; accepted: 0 to 255')),
        ('too_many_ports', dict(argv=['--ports', '256'],
                                said='--ports=256; accepted: 0 to 255')),
        ('negative_cold', dict(argv=['--cold-plugged', '-1'],
                               said='--cold-plugged=-1; accepted: 0 to')),
        ('no_vcpus', dict(argv=['--vcpus', '0'],
                          said='--vcpus=0; accepted: 1 or more')),
    ]

    def test_refused_before_any_boot(self):
        from pcie_sched.cmd import check
        args = main.build_parser().parse_args(['check'] + self.argv)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(2, check.run(args))
        self.assertIn(self.said, err.getvalue())


class DeprecatedOptionWarnings(fixtures.Fixture):
    """Capture oslo.config's warnings about deprecated options afresh.

    oslo.config warns once per option per process and oslo.log's
    versionutils once per message, so both memories are cleared for the
    test and put back after it.
    """

    def _setUp(self):
        from oslo_log import versionutils
        from pcie_sched.conf import pcie_sched as group
        self.log = self.useFixture(fixtures.FakeLogger(level='WARNING'))
        for opt in group.ALL_OPTS:
            self.addCleanup(setattr, opt, '_logged_deprecation',
                            opt._logged_deprecation)
            opt._logged_deprecation = False
        sent = versionutils._deprecated_messages_sent
        saved = dict(sent)
        sent.clear()
        self.addCleanup(sent.update, saved)
        self.addCleanup(sent.clear)

    def lines(self, name):
        return [line for line in self.log.output.splitlines()
                if f'"{name}" from group "pcie_sched"' in line]


class TestIgnoredSchedulerModelOptions(testtools.TestCase):
    """default_machine_types and default_firmware no longer do anything.

    Both are still registered (an option name is an interface) and read
    from ``--config-file`` without an error, but oslo.config names them as
    deprecated for removal with the reason, so that an operator who set
    them (``x86_64:pc``, ``x86_64:seabios``) learns that they are ignored.
    """

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.addCleanup(main.load_config, [])
        self.warnings = self.useFixture(DeprecatedOptionWarnings())

    def test_cli_names_them_as_deprecated(self):
        path = os.path.join(self.dir, 'nova.conf')
        with open(path, 'w') as handle:
            handle.write('[pcie_sched]\ndefault_machine_types = x86_64:pc\n'
                         'default_firmware = x86_64:seabios\n')
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(0, main.main(
                ['validate', 'hw:pci_hotplug_ports=4', '--config-file',
                 path]))
        for name in conf.pcie_sched.IGNORED_OPTS:
            (line,) = self.warnings.lines(name)
            self.assertIn('deprecated for removal', line)
            self.assertIn('The option is ignored', line)
            self.assertIn('unknown_host_policy', line)

    def test_any_value_is_accepted(self):
        # nova's own syntax, which the old dictionaries refused (exit 2
        # for the whole nova.conf), and values that were never valid.
        for machines, firmware in (('x86_64=q35,aarch64=virt', 'x86_64=bios'),
                                   ('', 'nonsense,,:')):
            path = os.path.join(self.dir, 'nova.conf')
            with open(path, 'w') as handle:
                handle.write(f'[pcie_sched]\ndefault_machine_types = '
                             f'{machines}\ndefault_firmware = {firmware}\n')
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(err):
                self.assertEqual(0, main.main(
                    ['validate', 'hw:pci_hotplug_ports=4', '--config-file',
                     path]), err.getvalue())

    def test_unset_options_are_not_named(self):
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(0, main.main(['validate',
                                           'hw:pci_hotplug_ports=4']))
        for name in conf.pcie_sched.IGNORED_OPTS:
            self.assertEqual([], self.warnings.lines(name))
