"""Tempest plugin entry point (``tempest.test_plugins``)."""

import os

from tempest.test_discover import plugins

from pcie_sched_tempest_plugin import config


class PcieSchedTempestPlugin(plugins.TempestPlugin):

    def load_tests(self):
        base = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return (os.path.join(base, 'pcie_sched_tempest_plugin', 'tests'),
                base)

    def register_opts(self, conf):
        conf.register_opt(config.service_option,
                          group='service_available')
        conf.register_group(config.group)
        conf.register_opts(config.opts, group=config.group)

    def get_opt_lists(self):
        return [(config.group.name, config.opts),
                ('service_available', [config.service_option])]
