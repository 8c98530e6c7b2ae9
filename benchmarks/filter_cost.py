"""Filter cost through nova's real HostFilterHandler, per host.

Same run, same hosts: nova's AllHostsFilter (the handler's floor),
AggregateInstanceExtraSpecsFilter, ComputeCapabilitiesFilter with
``capabilities:stats:pci_hotplug_ports_max='>= 20'`` (the crude baseline)
and PciHotplugPortsFilter without a spec and with capacity from stats,
aggregates or the model. Then nova's default enabled_filters chain with
and without PciHotplugPortsFilter.

    python benchmarks/filter_cost.py [--hosts 1000 10000 100000] [--repeat 7]
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nova.scheduler import filters  # noqa: E402
from nova.scheduler.filters import affinity_filter  # noqa: E402
from nova.scheduler.filters import aggregate_instance_extra_specs  # noqa
from nova.scheduler.filters import all_hosts_filter  # noqa: E402
from nova.scheduler.filters import compute_capabilities_filter  # noqa
from nova.scheduler.filters import compute_filter  # noqa: E402
from nova.scheduler.filters import image_props_filter  # noqa: E402

from pcie_sched.filters import pci_hotplug_ports  # noqa: E402
from pcie_sched import spec  # noqa: E402
from tests.functional import scheduler_support as support  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')


def build_hosts(count, source):
    kwargs = {'stats': dict(max_ports=200),
              'aggregate': dict(aggregate_max=[200]),
              'model': {}}[source]
    return [support.make_host(f'host{index}', **kwargs)
            for index in range(count)]


def time_filter(handler, flt, hosts, request, repeat):
    samples = []
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            passed = handler.get_filtered_objects([flt], hosts, request)
            samples.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return (statistics.median(samples) / len(hosts) * 1e6,
            min(samples) / len(hosts) * 1e6, len(passed or []))


def filter_cases():
    with_spec = support.make_request({spec.FLAVOR_KEY: '16'})
    no_spec = support.make_request({'hw:cpu_policy': 'shared'})
    capabilities = support.make_request(
        {'capabilities:stats:pci_hotplug_ports_max': '>= 20'})
    ours = pci_hotplug_ports.PciHotplugPortsFilter()
    return [
        ('AllHostsFilter', all_hosts_filter.AllHostsFilter(), with_spec),
        ('AggregateInstanceExtraSpecsFilter',
         aggregate_instance_extra_specs.AggregateInstanceExtraSpecsFilter(),
         with_spec),
        ('ComputeCapabilitiesFilter (>= 20 on stats)',
         compute_capabilities_filter.ComputeCapabilitiesFilter(),
         capabilities),
        ('PciHotplugPortsFilter, no spec', ours, no_spec),
        ('PciHotplugPortsFilter, spec', ours, with_spec),
    ]


def default_chain(with_ours):
    chain = [compute_filter.ComputeFilter(),
             compute_capabilities_filter.ComputeCapabilitiesFilter(),
             image_props_filter.ImagePropertiesFilter(),
             affinity_filter.ServerGroupAntiAffinityFilter(),
             affinity_filter.ServerGroupAffinityFilter()]
    if with_ours:
        chain.append(pci_hotplug_ports.PciHotplugPortsFilter())
    return chain


def run(sizes, repeat, chain_size):
    handler = filters.HostFilterHandler()
    rows = []
    for count in sizes:
        for source in ('stats', 'aggregate', 'model'):
            hosts = build_hosts(count, source)
            for name, flt, request in filter_cases():
                if source != 'stats' and 'PciHotplugPortsFilter' not in name:
                    continue
                median, best, passed = time_filter(handler, flt, hosts,
                                                   request, repeat)
                rows.append({'hosts': count, 'capacity_source': source,
                             'filter': name, 'us_per_host': median,
                             'us_per_host_min': best, 'passed': passed})
            del hosts
    # Ratios against the floor measured on the same run and size.
    floors = {row['hosts']: row['us_per_host'] for row in rows
              if row['filter'] == 'AllHostsFilter'}
    for row in rows:
        row['ratio_to_all_hosts'] = row['us_per_host'] / floors[row['hosts']]
    chain = []
    hosts = build_hosts(chain_size, 'stats')
    request = support.make_request({spec.FLAVOR_KEY: '16'})
    for with_ours in (False, True):
        samples = []
        for _ in range(repeat):
            flts = default_chain(with_ours)
            start = time.perf_counter()
            handler.get_filtered_objects(flts, hosts, request)
            samples.append(time.perf_counter() - start)
        chain.append({'hosts': chain_size, 'with_pci_hotplug_ports':
                      with_ours, 'seconds': statistics.median(samples)})
    return rows, chain


def machine():
    model = ''
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    import nova.version
    return {'cpu': model, 'cores': os.cpu_count(),
            'python': platform.python_version(),
            'nova': nova.version.version_string()}


def write(rows, chain, out_dir, plot=True):
    os.makedirs(out_dir, exist_ok=True)
    document = {'machine': machine(), 'filters': rows, 'chain': chain}
    with open(os.path.join(out_dir, 'filter.json'), 'w') as handle:
        json.dump(document, handle, indent=2)
    lines = [f"Machine: {document['machine']['cpu']}, "
             f"{document['machine']['cores']} cores, Python "
             f"{document['machine']['python']}, nova "
             f"{document['machine']['nova']}.", '',
             '.. list-table:: Filter cost per host (median)',
             '   :header-rows: 1', '',
             '   * - hosts', '     - capacity from', '     - filter',
             '     - us/host', '     - x AllHostsFilter']
    for row in rows:
        lines += [f"   * - {row['hosts']}",
                  f"     - {row['capacity_source']}",
                  f"     - {row['filter']}",
                  f"     - {row['us_per_host']:.3f}",
                  f"     - {row['ratio_to_all_hosts']:.2f}"]
    without, with_ours = chain
    overhead = (with_ours['seconds'] / without['seconds'] - 1) * 100
    lines += ['', f"nova's default filter chain at {without['hosts']} hosts: "
                  f"{without['seconds'] * 1000:.1f} ms without, "
                  f"{with_ours['seconds'] * 1000:.1f} ms with "
                  f"PciHotplugPortsFilter ({overhead:+.1f} %).", '']
    if plot:
        lines += ['.. image:: ../../benchmarks/results/filter.png', '']
        _plot(rows, os.path.join(out_dir, 'filter.png'))
    with open(os.path.join(out_dir, 'filter.rst'), 'w') as handle:
        handle.write('\n'.join(lines))
    return document


def _plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    figure, axis = pyplot.subplots(figsize=(8, 4.5))
    series = {}
    for row in rows:
        label = f"{row['filter']} [{row['capacity_source']}]"
        series.setdefault(label, []).append((row['hosts'],
                                             row['us_per_host']))
    for label, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        axis.plot(xs, ys, marker='o', label=label)
    axis.set_xscale('log')
    axis.set_xlabel('hosts')
    axis.set_ylabel('microseconds per host (median)')
    axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hosts', type=int, nargs='+',
                        default=[1000, 10000, 100000])
    parser.add_argument('--chain-hosts', type=int, default=10000)
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--out', default=RESULTS)
    parser.add_argument('--no-plot', action='store_true')
    args = parser.parse_args(argv)
    rows, chain = run(args.hosts, args.repeat, args.chain_hosts)
    document = write(rows, chain, args.out, plot=not args.no_plot)
    for row in rows:
        print(f"{row['hosts']:>7} {row['capacity_source']:>9} "
              f"{row['filter']:<45} {row['us_per_host']:8.3f} us/host "
              f"{row['ratio_to_all_hosts']:5.2f}x")
    print(json.dumps(document['chain']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
