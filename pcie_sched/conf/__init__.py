"""Configuration options, one module per option group.

Each group module exposes ``GROUP``, ``ALL_OPTS``, ``register_opts(conf)``
and ``list_opts()``. :func:`list_opts` here is the ``oslo.config.opts``
entry point that ``oslo-config-generator`` and the docs read.

Groups carry a title but no ``help``: oslo.config's Sphinx extension
renders group help as extra directive arguments and the docs build fails.
"""

from oslo_config import cfg

from pcie_sched.conf import compute
from pcie_sched.conf import pcie_sched
from pcie_sched.conf import probe

_GROUP_MODULES = (pcie_sched, probe, compute)

CONF = cfg.CONF


def register_opts(conf: cfg.ConfigOpts) -> None:
    for module in _GROUP_MODULES:
        module.register_opts(conf)


def list_opts():
    return [(module.GROUP, module.ALL_OPTS) for module in _GROUP_MODULES]


register_opts(CONF)
