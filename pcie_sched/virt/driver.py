"""nova's libvirt driver, with per-instance PCIe hotplug ports.

Select it in nova-compute's nova.conf::

    [DEFAULT]
    compute_driver = pcie_sched_ext.driver.PcieSchedLibvirtDriver

For an instance whose flavor or image asks for ``hw:pci_hotplug_ports``
the guest gets the :mod:`pcie_sched.topology` plan instead of nova's
``[libvirt] num_pcie_ports`` ports; every other instance is built exactly
as nova builds it. The host's capacity is reported as the compute node
stat ``pci_hotplug_ports_max`` (read by PciHotplugPortsFilter) and as
Placement traits (:mod:`pcie_sched.placement`).

No per-instance state lives on the driver: nova-compute 34 builds guests
on several native threads at once.
"""

import copy

from lxml import etree
from nova.compute import vm_states
from nova import exception
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import utils as libvirt_utils
from oslo_log import log as logging

from pcie_sched import capacity
from pcie_sched import conf as pcie_conf
from pcie_sched import host_capacity
from pcie_sched import instance_plan
from pcie_sched import placement
from pcie_sched import probe
from pcie_sched import spec
from pcie_sched import topology
from pcie_sched.virt import devices
from pcie_sched.virt import firmware

LOG = logging.getLogger(__name__)
CONF = pcie_conf.CONF


class HotplugPortsUnavailable(exception.BuildAbortException):
    """The guest's hotplug ports cannot be given on this host.

    A BuildAbortException, not a reschedule: the alternates nova would
    try come from the same scheduler pass, picked by PciHotplugPortsFilter
    from the same published capacities, so a host with the same QEMU and
    firmware fails the same way, and after the last one nova's fault only
    says "Exhausted all hosts". Aborting puts the ports asked for and this
    host's limit into the instance fault. A host with a newer QEMU may
    boot what this one cannot; the scheduler finds it when the count is in
    the flavor (see doc/source/compute.rst).

    The guest config is built again on hard reboot, resize and migration
    too, where nova's "Build of instance ... aborted" would mislead: the
    message names neither. nova cuts fault messages at 255 characters, so
    the prefix stays short and the reason leads with key and value.
    """

    msg_fmt = 'PCIe hotplug ports for instance %(instance_uuid)s: %(reason)s'


class NoFreeHotplugPort(exception.AttachInterfaceNotSupported):
    """An interface attach the instance has no free hotplug port for.

    An ``Invalid`` (AttachInterfaceNotSupported): nova-compute logs no
    traceback for it, records it as the instance fault and as the
    instance action event's details, and nova-api answers the attach with
    HTTP 400 and this message, instead of libvirt's "No more available
    PCI slots" in a log behind a bare HTTP 500.
    """

    msg_fmt = 'PCIe hotplug ports for instance %(instance_uuid)s: %(reason)s'


class _PlannedGuest(vconfig.LibvirtConfigGuest):
    """A guest config that also emits the plan's ``<qemu:override>``.

    nova's guest config has no place for domain-level QEMU namespace
    elements, which is where libvirt takes pcie-root-port properties.
    """

    qemu_override = None

    def format_dom(self):
        root = super().format_dom()
        if self.qemu_override is not None:
            root.append(copy.deepcopy(self.qemu_override))
        return root


class _PlanDevice(vconfig.LibvirtConfigObject):
    """One rendered controller element among nova's devices."""

    def __init__(self, element, **kwargs):
        super().__init__(root_name=element.tag, **kwargs)
        self._element = element

    def format_dom(self):
        return copy.deepcopy(self._element)


def _firmware_kind(guest) -> str:
    if guest.os_firmware == 'efi' or guest.os_loader_type == 'pflash':
        return 'uefi'
    return 'bios'


def _spec_key(instance) -> str:
    """The key the request came from, for the fault message."""
    if spec.from_flavor(instance.flavor.extra_specs) is not None:
        return spec.FLAVOR_KEY
    return f'image property {spec.IMAGE_KEY}'


class PcieSchedLibvirtDriver(libvirt_driver.LibvirtDriver):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # What the connected libvirt accepts, per (libvirt version, virt
        # type, arch, machine): a property of the host, not of a guest.
        self._loader_secure_refused = {}

    def _get_guest_config(self, instance, network_info, image_meta,
                          disk_info, *args, **kwargs):
        guest = super()._get_guest_config(instance, network_info, image_meta,
                                          disk_info, *args, **kwargs)
        if guest.os_firmware == 'efi' and self._refuses_loader_secure(guest):
            firmware.drop_refused_loader_secure(guest)
        try:
            requested = spec.requested_ports(
                instance.flavor.extra_specs, instance.system_metadata,
                image_key=spec.SYSTEM_METADATA_KEY)
        except spec.InvalidHotplugPortsSpec as exc:
            raise HotplugPortsUnavailable(
                instance_uuid=instance.uuid, reason=str(exc))
        if requested is None:
            instance_plan.clear(instance.system_metadata)
            return guest
        self._apply_plan(guest, instance, requested)
        return guest

    def _get_guest_xml(self, context, instance, *args, **kwargs):
        xml = super()._get_guest_xml(context, instance, *args, **kwargs)
        if instance_plan.ROOT_PORTS_KEY not in instance.system_metadata:
            return xml
        # Every endpoint gets an explicit port: the port it had, from the
        # previous domain where nova passes it (hard reboot, power on),
        # else as recorded (a build on another host), else the lowest
        # left.
        domain = etree.fromstring(xml)
        previous = instance_plan.recorded_ports(instance.system_metadata)
        previous.update(devices.previous_ports(kwargs.get('old_guest')))
        assigned = devices.pin_endpoints(
            domain, self._guest_arch(domain), previous,
            CONF.pcie_sched_compute.hotplug_on_cold_plugged_ports)
        instance_plan.record_ports(instance.system_metadata, assigned)
        return etree.tostring(domain, pretty_print=True).decode()

    def _guest_arch(self, domain) -> str:
        return (domain.find('os/type').get('arch') or
                self._host.get_capabilities().host.cpu.arch)

    def _refuses_loader_secure(self, guest) -> bool:
        """See :mod:`pcie_sched.virt.firmware`; asked once per key."""
        connection = self._host.get_connection()
        key = (connection.getLibVersion(), guest.virt_type, guest.os_arch,
               guest.os_mach_type)
        refused = self._loader_secure_refused.get(key)
        if refused is None:
            refused = firmware.refuses_loader_secure(connection, *key[1:])
            self._loader_secure_refused[key] = refused
        return refused

    def _apply_plan(self, guest, instance, requested: int) -> None:
        # The guest's architecture: nova emulates another one for images
        # with hw_emulation_architecture.
        arch = guest.os_arch or self._host.get_capabilities().host.cpu.arch
        machine = guest.os_mach_type or ''
        try:
            capacity.parse_machine(arch, machine)
        except capacity.UnsupportedMachine:
            raise HotplugPortsUnavailable(
                instance_uuid=instance.uuid,
                reason=f'{spec.FLAVOR_KEY}={requested} needs a PCI Express '
                       f'machine type; accepted: q35 on x86_64, virt on '
                       f'aarch64; this guest has {arch} {machine!r} (set '
                       f'hw_machine_type or [libvirt] hw_machine_type)')
        devices.pin_usb_controller_model(guest)
        cold = devices.cold_plugged_devices(guest, arch)
        recorded = self._recorded_plan(instance, requested)
        if recorded is None:
            needed = requested + len(cold)
        else:
            # Devices hot-plugged since the first build are cold-plugged
            # now: they sit on ports that were free, the total stays.
            needed = max(recorded.root_ports, len(cold))
        vcpus = instance.flavor.vcpus
        guest_limit = (host_capacity.guest_vector_limit(vcpus, len(cold))
                       if arch == 'x86_64' and
                       CONF.pcie_sched.enforce_guest_vector_limit else None)
        if guest_limit is not None and needed > guest_limit:
            # No host can help: the guest itself would not survive.
            raise HotplugPortsUnavailable(
                instance_uuid=instance.uuid,
                # nova cuts fault messages at 255 characters: the key,
                # value and accepted range come first.
                reason=f'{_spec_key(instance)}={requested}; accepted: 0 to '
                       f'{max(guest_limit - len(cold), 0)}: with '
                       f'{len(cold)} cold-plugged, {needed} root ports; a '
                       f'guest with {vcpus} vCPU(s) runs out of interrupt '
                       f'vectors above {guest_limit}')
        firmware_kind = _firmware_kind(guest)
        limit = self.pci_hotplug_ports_max(arch, machine, firmware_kind)
        if needed > limit:
            raise HotplugPortsUnavailable(
                instance_uuid=instance.uuid,
                reason=f'{_spec_key(instance)}={requested} needs {needed} '
                       f'root ports ({len(cold)} cold-plugged), {arch} '
                       f'{machine} {firmware_kind} on this host boots at most '
                       f'{limit}: accepted 0 to '
                       f'{max(limit - len(cold), 0)}')
        try:
            plan = topology.plan(
                needed - len(cold), cold, arch, machine,
                hotplug_on_cold_plugged=(
                    CONF.pcie_sched_compute.hotplug_on_cold_plugged_ports))
        except topology.TopologyError as exc:
            # A limit above what one root bus holds (max_ports_override
            # goes to 255): no host lays this out either.
            raise HotplugPortsUnavailable(
                instance_uuid=instance.uuid,
                reason=f'{_spec_key(instance)}={requested}: {exc}')
        rendered = topology.to_libvirt_xml(plan)
        guest.devices = [
            device for device in guest.devices
            if not isinstance(device, (
                vconfig.LibvirtConfigGuestPCIeRootController,
                vconfig.LibvirtConfigGuestPCIeRootPortController))]
        for element in rendered.find('devices'):
            guest.add_device(_PlanDevice(element))
        # Safe: _PlannedGuest only adds behaviour, no state to initialise.
        guest.__class__ = _PlannedGuest
        guest.qemu_override = rendered.find(
            f'{{{topology.QEMU_XML_NS}}}override')
        instance.system_metadata.update(instance_plan.RecordedPlan(
            root_ports=needed, requested=requested).to_system_metadata())
        LOG.info('Giving the guest %(total)d root ports: %(free)d free for '
                 'hotplug, %(cold)d for cold-plugged devices (%(key)s=%(n)d, '
                 '%(how)s; host limit %(limit)d)',
                 {'total': needed, 'free': needed - len(cold),
                  'cold': len(cold), 'key': _spec_key(instance),
                  'n': requested, 'limit': limit,
                  'how': 'as first planned' if recorded else 'new plan'},
                 instance=instance)

    @staticmethod
    def _recorded_plan(instance, requested):
        """The plan recorded at the first build, if it is for ``requested``.

        A resize to a flavor with another count plans again.
        """
        try:
            recorded = instance_plan.from_system_metadata(
                instance.system_metadata)
        except instance_plan.UnknownLayout as exc:
            raise HotplugPortsUnavailable(instance_uuid=instance.uuid,
                                          reason=str(exc))
        if recorded is None or recorded.requested != requested:
            return None
        return recorded

    # -- hot-plug ----------------------------------------------------------

    def network_binding_host_id(self, context, instance):
        # nova-compute asks this right before it creates and binds the
        # port of an interface attach (ComputeManager._attach_interface),
        # and during a build's network allocation (vm_state building).
        # Refusing an attach here means no port to roll back and the
        # reason reaches the API user (see NoFreeHotplugPort).
        if instance.vm_state != vm_states.BUILDING:
            self._check_free_port(instance)
        return super().network_binding_host_id(context, instance)

    def attach_interface(self, context, instance, image_meta, vif):
        # Checked again: nova locks attaches per port, not per instance,
        # so two concurrent attaches may both have seen the last free
        # port. nova reports this one as a generic attach failure.
        self._check_free_port(instance)
        super().attach_interface(context, instance, image_meta, vif)
        self._record_device_ports(instance)

    def attach_volume(self, context, connection_info, instance, mountpoint,
                      *args, **kwargs):
        super().attach_volume(context, connection_info, instance, mountpoint,
                              *args, **kwargs)
        self._record_device_ports(instance)

    def _record_device_ports(self, instance) -> None:
        """Note where libvirt put a hot-plugged device, for later builds.

        Saved at once: nova saves the instance after an interface attach
        but not after a volume attach, and a move reads the instance
        afresh from the database.
        """
        if instance_plan.ROOT_PORTS_KEY not in instance.system_metadata:
            return
        try:
            domain = etree.fromstring(
                self._host.get_guest(instance).get_xml_desc())
        except exception.InstanceNotFound:
            return
        instance_plan.record_ports(
            instance.system_metadata,
            devices.endpoint_ports(domain, self._guest_arch(domain)))
        instance.save()

    def _check_free_port(self, instance) -> None:
        """Refuse a hot-plug when the guest's plan has no free port left.

        Only guests with a plan: others keep nova's and libvirt's own
        behaviour.
        """
        try:
            requested = spec.requested_ports(
                instance.flavor.extra_specs, instance.system_metadata,
                image_key=spec.SYSTEM_METADATA_KEY)
        except spec.InvalidHotplugPortsSpec:
            return
        if requested is None:
            return
        try:
            xml = self._host.get_guest(instance).get_xml_desc()
        except exception.InstanceNotFound:
            return
        usage = devices.port_usage(etree.fromstring(xml))
        if usage.free or not usage.total:
            # No root ports at all: not a domain the plan laid out (nova's
            # test doubles report none); libvirt decides as it would.
            return
        reason = (f'no free hotplug port: {usage.in_use} of {usage.total} '
                  f'root ports in use, 0 free ({_spec_key(instance)}='
                  f'{requested}); detach a device first, or resize to a '
                  f'flavor with a larger {spec.FLAVOR_KEY}')
        LOG.warning('Refusing to hot-plug a device: %s', reason,
                    instance=instance)
        raise NoFreeHotplugPort(instance_uuid=instance.uuid, reason=reason)

    def pci_hotplug_ports_max(self, arch: str, machine: str,
                              firmware: str) -> int:
        """Most root ports this host boots: measured if cached, else model."""
        override = CONF.pcie_sched_compute.max_ports_override
        if override is not None:
            return override
        measured = probe.load_cached_max(arch, machine, firmware)
        if measured is not None:
            return measured
        version = capacity.qemu_version_from_hypervisor_version(
            self._host.get_version())
        return capacity.estimate(topology.machine_profile(
            arch, machine, firmware, version)).max_ports

    def _default_capacity(self):
        arch = self._host.get_capabilities().host.cpu.arch
        machine = libvirt_utils.get_default_machine_type(arch) or (
            {'x86_64': 'q35', 'aarch64': 'virt'}.get(arch))
        try:
            return self.pci_hotplug_ports_max(
                arch, machine, CONF.pcie_sched_compute.firmware)
        except capacity.UnsupportedMachine as exc:
            LOG.info('Not reporting PCIe hotplug port capacity: %s', exc)
            return None

    def get_available_resource(self, nodename):
        data = super().get_available_resource(nodename)
        max_ports = self._default_capacity()
        if max_ports is not None:
            data.setdefault('stats', {})[spec.HOST_CAPACITY_KEY] = str(
                max_ports)
        return data

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        max_ports = self._default_capacity()
        wanted = (placement.traits_for_capacity(max_ports)
                  if max_ports is not None else frozenset())
        current = provider_tree.data(nodename).traits
        provider_tree.update_traits(nodename,
                                    placement.merge(current, wanted))
