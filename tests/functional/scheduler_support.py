"""Real nova scheduler objects for filter tests and benchmarks."""

import json

from nova import objects
from nova.scheduler import host_manager
from oslo_utils.fixture import uuidsentinel as uuids
from oslo_utils import timeutils

from pcie_sched import spec

objects.register_all()

#: nova's libvirt driver encodes QEMU 7.2.0 (Debian 12) like this.
QEMU_7_2 = 7002000


def make_host(name, max_ports=None, aggregate_max=(), stats=None,
              hypervisor_type='QEMU', hypervisor_version=QEMU_7_2,
              arch='x86_64'):
    """A HostState updated from a ComputeNode, as HostManager does.

    :param max_ports: published ``pci_hotplug_ports_max`` stat (any type;
        ComputeNode.stats coerces to strings).
    :param aggregate_max: one aggregate per value, with that
        ``pci_hotplug_ports_max`` metadata.
    """
    host_state = host_manager.HostState(name, name, uuids.cell1)
    node_stats = dict(stats or {})
    if max_ports is not None:
        node_stats[spec.HOST_CAPACITY_KEY] = str(max_ports)
    compute = objects.ComputeNode(
        uuid=getattr(uuids, name), host=name, hypervisor_hostname=name,
        free_disk_gb=1000, disk_available_least=1000, local_gb=1000,
        local_gb_used=0, memory_mb=65536, free_ram_mb=65536,
        vcpus=32, vcpus_used=0, updated_at=None, numa_topology=None,
        pci_device_pools=None, host_ip='127.0.0.1',
        hypervisor_type=hypervisor_type,
        hypervisor_version=hypervisor_version,
        cpu_info=json.dumps({'arch': arch, 'model': 'Haswell'}),
        supported_hv_specs=[], stats=node_stats, metrics='[]',
        cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0)
    now = timeutils.utcnow()
    service = objects.Service(
        host=name, binary='nova-compute', topic='compute', disabled=False,
        disabled_reason=None, forced_down=False, updated_at=now,
        last_seen_up=now, uuid=getattr(uuids, f'service_{name}'))
    aggregates = [
        objects.Aggregate(id=index, name=f'{name}-agg{index}', hosts=[name],
                          metadata={spec.HOST_CAPACITY_KEY: str(value)})
        for index, value in enumerate(aggregate_max)]
    host_state.update(compute=compute, service=service,
                      aggregates=aggregates)
    return host_state


def make_request(extra_specs=None, networks=1, ephemeral_gb=0, swap=0,
                 vcpus=2, rebuild=False):
    """A RequestSpec as the conductor builds it for a boot."""
    flavor = objects.Flavor(
        flavorid='f1', name='f1', vcpus=vcpus, memory_mb=512, root_gb=1,
        ephemeral_gb=ephemeral_gb, swap=swap,
        extra_specs=dict(extra_specs or {}))
    hints = {'_nova_check_type': ['rebuild']} if rebuild else {}
    request = objects.RequestSpec(
        instance_uuid=uuids.instance, flavor=flavor, num_instances=1,
        image=objects.ImageMeta.from_dict({}), scheduler_hints=hints,
        instance_group=None, force_hosts=None, force_nodes=None,
        ignore_hosts=None)
    if networks == 'none':
        request.requested_networks = objects.NetworkRequestList(
            objects=[objects.NetworkRequest(network_id='none')])
    elif networks is not None:
        request.requested_networks = objects.NetworkRequestList(
            objects=[objects.NetworkRequest(network_id=getattr(uuids, f'n{i}'))
                     for i in range(networks)])
    return request
