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


def make_aggregate(index, value, name=None, hosts=()):
    """An Aggregate with ``pci_hotplug_ports_max`` metadata ``value``.

    ``value`` None gives an aggregate without the key (an availability
    zone, say).
    """
    metadata = {} if value is None else {spec.HOST_CAPACITY_KEY: value}
    return objects.Aggregate(id=index, name=name or f'agg{index}',
                             hosts=list(hosts), metadata=metadata)


def make_host(name, max_ports=None, aggregate_max=(), stats=None,
              hypervisor_type='QEMU', hypervisor_version=QEMU_7_2,
              arch='x86_64', aggregates=(), cpu_info=None):
    """A HostState updated from a ComputeNode, as HostManager does.

    :param max_ports: published ``pci_hotplug_ports_max`` stat (any type;
        ComputeNode.stats coerces to strings).
    :param aggregate_max: one aggregate per value, with that
        ``pci_hotplug_ports_max`` metadata.
    :param aggregates: Aggregate objects the host is also in; HostManager
        gives every member host the same objects, so pass shared ones.
    :param cpu_info: the raw ``cpu_info`` string; default a JSON document
        with ``arch``.
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
        cpu_info=(json.dumps({'arch': arch, 'model': 'Haswell'})
                  if cpu_info is None else cpu_info),
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
        for index, value in enumerate(aggregate_max)] + list(aggregates)
    host_state.update(compute=compute, service=service,
                      aggregates=aggregates)
    return host_state


def make_pci_requests(alias_counts=(), neutron_ports=0):
    """InstancePCIRequests as nova-api builds them.

    :param alias_counts: one flavor-alias request (``pci_passthrough:alias``)
        per count.
    :param neutron_ports: SR-IOV port requests (no alias, a requester).
    """
    requests = [
        objects.InstancePCIRequest(
            count=count, alias_name=f'alias{index}',
            spec=[{'vendor_id': '8086', 'product_id': '1520'}],
            request_id=getattr(uuids, f'pci_request{index}'))
        for index, count in enumerate(alias_counts)]
    requests += [
        objects.InstancePCIRequest(
            count=1, alias_name=None, spec=[{'physical_network': 'phys'}],
            requester_id=getattr(uuids, f'port{index}'),
            request_id=getattr(uuids, f'port_request{index}'))
        for index in range(neutron_ports)]
    return objects.InstancePCIRequests(instance_uuid=uuids.instance,
                                       requests=requests)


def make_request(extra_specs=None, networks=1, ephemeral_gb=0, swap=0,
                 vcpus=2, rebuild=False, pci_requests=None):
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
    if pci_requests is not None:
        request.pci_requests = pci_requests
    if networks == 'none':
        request.requested_networks = objects.NetworkRequestList(
            objects=[objects.NetworkRequest(network_id='none')])
    elif networks is not None:
        request.requested_networks = objects.NetworkRequestList(
            objects=[objects.NetworkRequest(network_id=getattr(uuids, f'n{i}'))
                     for i in range(networks)])
    return request
