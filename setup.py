import setuptools
from setuptools import dist

# nova 34 loads [DEFAULT] compute_driver as "nova.virt.<value>", so the
# driver needs a shim module in nova's namespace: nova.virt.pcie_sched_ext.
# pbr only expands [files] packages that are top-level directories, so the
# shim package is added here. Only its own directory is installed; nova's
# nova/__init__.py and nova/virt/__init__.py are never shipped or replaced.
SHIM_PACKAGE = 'nova.virt.pcie_sched_ext'


class Distribution(dist.Distribution):

    def finalize_options(self):
        super().finalize_options()
        if SHIM_PACKAGE not in (self.packages or []):
            self.packages = list(self.packages or []) + [SHIM_PACKAGE]


setuptools.setup(
    setup_requires=['pbr>=6.0.0'],
    pbr=True,
    distclass=Distribution)
