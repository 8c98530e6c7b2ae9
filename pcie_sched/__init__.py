"""pcie-sched: per-flavor PCIe hotplug ports for OpenStack Nova."""
