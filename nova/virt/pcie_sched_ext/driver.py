"""Shim so nova-compute can load pcie-sched's driver.

nova 34 loads ``[DEFAULT] compute_driver`` as ``nova.virt.<value>``, so an
out-of-tree driver needs a module under ``nova.virt``. This package holds
nothing but this name; the driver lives in :mod:`pcie_sched.virt.driver`::

    [DEFAULT]
    compute_driver = pcie_sched_ext.driver.PcieSchedLibvirtDriver
"""

from pcie_sched.virt.driver import PcieSchedLibvirtDriver

__all__ = ['PcieSchedLibvirtDriver']
