"""The tempest plugin loads through tempest's own plugin manager."""

import os

from oslo_config import cfg
import testtools

from pcie_sched import spec

try:
    from tempest.test_discover import plugins as tempest_plugins
except ImportError as exc:  # pragma: no cover - a setup problem
    raise ImportError(f'{exc}: install tempest ("pip install tempest"), '
                      f'it is in test-requirements.txt') from exc


class TestTempestPlugin(testtools.TestCase):

    def _plugin(self):
        # tempest finds plugins through the tempest.test_plugins entry
        # point, exactly as "tempest run" does on a devstack node.
        manager = tempest_plugins.TempestTestPluginManager()
        names = [ext.name for ext in manager.ext_plugins]
        self.assertIn('pcie_sched', names)
        return next(ext.obj for ext in manager.ext_plugins
                    if ext.name == 'pcie_sched')

    def test_options_register_and_bound_the_ports(self):
        conf = cfg.ConfigOpts()
        self._plugin().register_opts(conf)
        conf([])
        self.assertFalse(conf.service_available.pcie_sched)
        self.assertEqual(8, conf.pcie_sched.hotplug_ports)
        # tempest must not ask for more ports than nova-api accepts.
        conf.set_override('hotplug_ports', spec.MAX_PORTS, 'pcie_sched')
        self.assertEqual(spec.MAX_PORTS, conf.pcie_sched.hotplug_ports)
        self.assertRaises(ValueError, conf.set_override, 'hotplug_ports',
                          spec.MAX_PORTS + 1, 'pcie_sched')
        listed = dict(self._plugin().get_opt_lists())
        self.assertEqual(['hotplug_ports'],
                         [opt.name for opt in listed['pcie_sched']])

    def test_load_tests_points_at_importable_test_modules(self):
        test_dir, top = self._plugin().load_tests()
        self.assertTrue(os.path.isdir(test_dir), test_dir)
        modules = []
        for root, _, files in os.walk(test_dir):
            for name in files:
                if name.startswith('test_') and name.endswith('.py'):
                    path = os.path.relpath(os.path.join(root, name), top)
                    modules.append(path[:-3].replace(os.sep, '.'))
        self.assertEqual(
            ['pcie_sched_tempest_plugin.tests.api.test_extra_spec',
             'pcie_sched_tempest_plugin.tests.scenario.'
             'test_hotplug_interfaces'], sorted(modules))
        for module in modules:
            # Importing runs tempest's decorators (idempotent ids).
            __import__(module)
