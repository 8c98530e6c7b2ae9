"""Filter cost through nova's real HostFilterHandler, per host.

For each host count and each capacity source (stats; stats under
aggregate ceilings shared by racks of hosts as nova's HostManager shares
them; no capacity published, which the filter rejects), one host set is
built and nova's AllHostsFilter (the handler's floor) is timed on
it, interleaved with PciHotplugPortsFilter without and with a spec; on the
stats set also AggregateInstanceExtraSpecsFilter and
ComputeCapabilitiesFilter with ``capabilities:stats:pci_hotplug_ports_max=
'>= 20'`` (the crude baseline), and on every set a reference filter that
only reads one stat per host (the memory floor of any stats-reading
filter). Hosts carry the stats nova's resource tracker keeps. Then
nova's default enabled_filters chain alone and with AllHostsFilter, the
one-read reference or PciHotplugPortsFilter appended. Prints and
records each target of issue 7 as met or missed, and the machine it ran
on.

    python benchmarks/filter_cost.py [--hosts 1000 10000 100000] [--repeat 7]
        [--chain-hosts 10000] [--gc] [--no-plot] [--out DIR]
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

from benchmarks import verdicts as verdicts_report  # noqa: E402
from pcie_sched.filters import pci_hotplug_ports  # noqa: E402
from pcie_sched import spec  # noqa: E402
from tests.functional import scheduler_support as support  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')


#: Targets from issue 7, as ratios to AllHostsFilter on the same hosts.
TARGET_NO_SPEC = 1.0
TARGET_SPEC = 1.1
#: "Flat from 1k to 100k hosts": the largest size may cost at most this
#: much more per host than the smallest, both for the filter's own
#: microseconds and for its ratio to AllHostsFilter. AllHostsFilter's own
#: microseconds are reported against the same bound: where the floor is
#: not flat either, the machine (caches, memory), not the filter, grows.
TARGET_FLAT = 1.2
#: nova's default chain may grow by less than this with our filter.
TARGET_CHAIN = 0.05

SOURCES = ('stats', 'aggregate', 'unpublished')
#: Hosts per capacity aggregate. nova's HostManager gives every member
#: host the same Aggregate objects (aggs_by_id), so a cloud of 100k
#: hosts in racks of 40 has 2,500 such aggregates, not 100k.
HOSTS_PER_AGGREGATE = 40

FLOOR = 'AllHostsFilter'
#: The least any filter that decides from each host's stats can do: one
#: dictionary read per host in a list comprehension, nothing else.
ONE_READ = 'one stats read per host (reference)'


class OneStatsReadFilter(filters.BaseHostFilter):
    """Reads each host's capacity stat and keeps every host.

    Not a filter anyone should run: it shows what touching every host's
    stats costs on this machine at each size, which no filter that reads
    them can go below.
    """

    def filter_all(self, filter_obj_list, spec_obj):
        key = spec.HOST_CAPACITY_KEY
        # Every host passes (a missing stat reads as True), so the handler
        # does the same bookkeeping after it as after the real filter.
        return [host for host in filter_obj_list
                if host.stats.get(key, True)]


def compute_stats(index):
    """The stats nova's resource tracker keeps for a compute node.

    nova.compute.stats counts instances per VM state, task state, OS type
    and project, plus io_workload and failed_builds, so a real host's
    stats are never empty even when it publishes no capacity: a filter
    looking for a key that is absent must still read them.
    """
    return {'num_instances': '3', 'num_vm_active': '3',
            'num_task_None': '3', 'num_os_type_linux': '3',
            f'num_proj_project{index % 50}': '3', 'io_workload': '0',
            'failed_builds': '0'}


def build_hosts(count, source):
    if source == 'stats':
        return [support.make_host(f'host{index}', max_ports=200,
                                  stats=compute_stats(index))
                for index in range(count)]
    if source == 'unpublished':
        # nova's own libvirt driver: no capacity, so no host passes a
        # request for ports (unknown_host_policy = reject).
        return [support.make_host(f'host{index}', stats=compute_stats(index))
                for index in range(count)]
    # Published capacities under a ceiling in rack aggregates. Every host
    # is also in an availability-zone aggregate without the key, as most
    # are, so the filter looks at two aggregates per host.
    zone = support.make_aggregate(0, None, name='az1')
    racks = [support.make_aggregate(index + 1, '200', name=f'rack{index}')
             for index in range(-(-count // HOSTS_PER_AGGREGATE))]
    return [support.make_host(f'host{index}', max_ports=200,
                              stats=compute_stats(index),
                              aggregates=[
                                  zone, racks[index // HOSTS_PER_AGGREGATE]])
            for index in range(count)]


def time_once(handler, flts, hosts, request, collect):
    """Seconds for one handler pass of ``flts`` and how many hosts passed."""
    if collect:
        gc.enable()
    else:
        gc.disable()
    try:
        start = time.perf_counter()
        passed = handler.get_filtered_objects(flts, hosts, request)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed, len(passed or [])


def filter_cases(source):
    """(name, filter, request, target ratio or None) for one host set."""
    with_spec = support.make_request({spec.FLAVOR_KEY: '16'})
    no_spec = support.make_request({'hw:cpu_policy': 'shared'})
    capabilities = support.make_request(
        {'capabilities:stats:pci_hotplug_ports_max': '>= 20'})
    ours = pci_hotplug_ports.PciHotplugPortsFilter()
    cases = [(FLOOR, all_hosts_filter.AllHostsFilter(), with_spec, None)]
    if source == 'stats':
        cases += [
            ('AggregateInstanceExtraSpecsFilter',
             aggregate_instance_extra_specs.
             AggregateInstanceExtraSpecsFilter(), with_spec, None),
            ('ComputeCapabilitiesFilter (>= 20 on stats)',
             compute_capabilities_filter.ComputeCapabilitiesFilter(),
             capabilities, None)]
    cases += [
        (ONE_READ, OneStatsReadFilter(), with_spec, None),
        ('PciHotplugPortsFilter, no spec', ours, no_spec, TARGET_NO_SPEC),
        ('PciHotplugPortsFilter, spec', ours, with_spec, TARGET_SPEC),
    ]
    return cases


def measure(handler, hosts, cases, repeat, collect):
    """Time every case ``repeat`` times, interleaved with the floor.

    Each round times AllHostsFilter and then every other case on the same
    hosts, so a neighbour's load (this machine is shared) hits the floor
    and the filter alike. The ratio judged is best round against best
    round; the median and range of the per-round ratios are kept too.
    """
    samples = {name: [] for name, _, _, _ in cases}
    ratios = {name: [] for name, _, _, _ in cases}
    passed = {}
    for _ in range(repeat + 1):  # the first round warms caches, unrecorded
        floor = None
        for name, flt, request, _ in cases:
            elapsed, passed[name] = time_once(handler, [flt], hosts, request,
                                              collect)
            if floor is None:
                floor = elapsed
            samples[name].append(elapsed)
            ratios[name].append(elapsed / floor)
    rows = []
    best_floor = min(samples[FLOOR][1:] or samples[FLOOR])
    for name, _, _, target in cases:
        times = samples[name][1:] or samples[name]
        rounds = ratios[name][1:] or ratios[name]
        # Best of the rounds: a neighbour's load only ever adds time, so
        # the fastest round is the closest to the code's own cost.
        ratio = min(times) / best_floor
        rows.append({
            'filter': name, 'hosts': len(hosts),
            'us_per_host': min(times) / len(hosts) * 1e6,
            'us_per_host_median': (statistics.median(times) / len(hosts) *
                                   1e6),
            'ratio_to_all_hosts': ratio,
            'ratio_to_all_hosts_paired_median': statistics.median(rounds),
            'ratio_to_all_hosts_paired_min': min(rounds),
            'ratio_to_all_hosts_paired_max': max(rounds),
            'target_ratio': target,
            'meets_target': None if target is None else ratio <= target,
            'passed': passed[name]})
    return rows


def default_chain(added=None):
    """nova's default enabled_filters, plus ``added`` at the end."""
    chain = [compute_filter.ComputeFilter(),
             compute_capabilities_filter.ComputeCapabilitiesFilter(),
             image_props_filter.ImagePropertiesFilter(),
             affinity_filter.ServerGroupAntiAffinityFilter(),
             affinity_filter.ServerGroupAffinityFilter()]
    if added is not None:
        chain.append(added())
    return chain


#: What is appended to nova's default chain, in the order timed: nothing,
#: nova's filter that passes every host through the per-host path any
#: BaseHostFilter uses (for scale), the one-read reference (what reading
#: each host's stats adds to a chain whose filters do not) and ours.
CHAIN_ADDITIONS = (
    (None, None),
    (FLOOR, all_hosts_filter.AllHostsFilter),
    (ONE_READ, OneStatsReadFilter),
    ('PciHotplugPortsFilter', pci_hotplug_ports.PciHotplugPortsFilter),
)


def chain_growth(chain, added):
    """How much ``added`` grows the chain: a fraction of the bare chain."""
    rows = {row['added']: row for row in chain}
    return rows[added]['seconds'] / rows[None]['seconds'] - 1


def run(sizes, repeat, chain_size, collect=False, progress=None):
    handler = filters.HostFilterHandler()
    rows = []
    for count in sizes:
        for source in SOURCES:
            hosts = build_hosts(count, source)
            for row in measure(handler, hosts, filter_cases(source), repeat,
                               collect):
                row['capacity_source'] = source
                rows.append(row)
                if progress:
                    progress(row)
            del hosts
            gc.collect()
    chain = []
    hosts = build_hosts(chain_size, 'stats')
    request = support.make_request({spec.FLAVOR_KEY: '16'})
    samples = {name: [] for name, _ in CHAIN_ADDITIONS}
    passed = {}
    # The difference sought (a few %) is smaller than a neighbour's noise
    # on one round: twice the rounds, interleaved, best of each.
    for _ in range(2 * repeat):
        for name, added in CHAIN_ADDITIONS:
            # The same garbage collector setting as the filter rows.
            seconds, hosts_passed = time_once(
                handler, default_chain(added), hosts, request, collect)
            samples[name].append(seconds)
            # ComputeFilter drops hosts whose service has not reported for
            # service_down_time (60 s): a chain that passes no host stops
            # at its first filter and times nothing of the others.
            passed[name] = min(passed.get(name, len(hosts)), hosts_passed)
    for name, _ in CHAIN_ADDITIONS:
        # Within a round the chains run back to back, so a neighbour's
        # load mostly hits all of them: the per-round growth over the bare
        # chain is steadier than the best rounds compared.
        paired = [with_it / bare - 1 for with_it, bare
                  in zip(samples[name], samples[None])]
        chain.append({'hosts': chain_size, 'added': name,
                      'with_pci_hotplug_ports':
                          name == 'PciHotplugPortsFilter',
                      'passed': passed[name],
                      'seconds': min(samples[name]),
                      'seconds_median': statistics.median(samples[name]),
                      'growth_paired_median': statistics.median(paired),
                      'growth_paired_min': min(paired),
                      'growth_paired_max': max(paired)})
    return rows, chain


def verdicts(rows, chain):
    """Each target, what was measured and whether it was met."""
    results = []
    for row in rows:
        if row['target_ratio'] is None:
            continue
        results.append({
            'target': f"{row['filter']} [{row['capacity_source']}] at "
                      f"{row['hosts']} hosts <= {row['target_ratio']}x "
                      f"{FLOOR}",
            'measured': f"{row['ratio_to_all_hosts']:.2f}x",
            'met': row['meets_target']})
    sizes = sorted({row['hosts'] for row in rows})
    # From the smallest size, as issue 7 asks; and between the two
    # largest, which tells the machine's caches (full by then) from the
    # filter's own growth.
    spans = [(sizes[0], sizes[-1])] if len(sizes) > 1 else []
    if len(sizes) > 2:
        spans.append((sizes[-2], sizes[-1]))
    for first, last in spans:
        for source in SOURCES:
            for name in (FLOOR, ONE_READ, 'PciHotplugPortsFilter, no spec',
                         'PciHotplugPortsFilter, spec'):
                by_size = {row['hosts']: row for row in rows
                           if row['filter'] == name and
                           row['capacity_source'] == source}
                if first not in by_size or last not in by_size:
                    continue
                small, large = by_size[first], by_size[last]
                growth = large['us_per_host'] / small['us_per_host']
                results.append({
                    'target': f"{name} [{source}] us/host flat: "
                              f"{last} hosts <= {TARGET_FLAT}x "
                              f"{first} hosts",
                    'measured': f"{small['us_per_host']:.3f} -> "
                                f"{large['us_per_host']:.3f} us/host "
                                f"({growth:.2f}x)",
                    'met': growth <= TARGET_FLAT})
                if name in (FLOOR, ONE_READ):
                    continue
                growth = (large['ratio_to_all_hosts'] /
                          small['ratio_to_all_hosts'])
                results.append({
                    'target': f"{name} [{source}] ratio to {FLOOR} flat: "
                              f"{last} hosts <= {TARGET_FLAT}x "
                              f"{first} hosts",
                    'measured': f"{small['ratio_to_all_hosts']:.2f}x -> "
                                f"{large['ratio_to_all_hosts']:.2f}x",
                    'met': growth <= TARGET_FLAT})
    overhead = chain_growth(chain, 'PciHotplugPortsFilter')
    results.append({
        'target': f"nova's default chain at {chain[0]['hosts']} hosts grows "
                  f"by < {TARGET_CHAIN:.0%} with PciHotplugPortsFilter",
        'measured': f'{overhead:+.1%} (the one-read reference: '
                    f'{chain_growth(chain, ONE_READ):+.1%})',
        'met': overhead < TARGET_CHAIN})
    return results


def machine():
    info = {'cpu': '', 'cores': os.cpu_count(),
            'python': platform.python_version(),
            'kernel': platform.release(), 'memory_gib': None}
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
        with open('/proc/meminfo') as handle:
            for line in handle:
                if line.startswith('MemTotal:'):
                    info['memory_gib'] = round(
                        int(line.split()[1]) / 2 ** 20, 1)
                    break
    except OSError:
        pass
    import nova.version
    info['nova'] = nova.version.version_string()
    return info


def _load():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def describe_machine(document):
    info = document['machine']
    return (f"Machine: {info['cpu']}, {info['cores']} cores, "
            f"{info['memory_gib']} GiB, Linux {info['kernel']}, Python "
            f"{info['python']}, nova {info['nova']}; load average "
            f"{document['load_before']} before, {document['load_after']} "
            f"after; GC {'on' if document['gc'] else 'off'} while timing; "
            f"best of {document['repeat']} rounds.")


def write(rows, chain, out_dir, plot=True, extra=None):
    os.makedirs(out_dir, exist_ok=True)
    document = {'machine': machine()}
    document.update(extra or {})
    document.update({'filters': rows, 'chain': chain,
                     'verdicts': verdicts(rows, chain)})
    with open(os.path.join(out_dir, 'filter.json'), 'w') as handle:
        json.dump(document, handle, indent=2)
    lines = [describe_machine(document), '',
             '.. list-table:: Filter cost per host (best round; median)',
             '   :header-rows: 1', '',
             '   * - hosts', '     - capacity from', '     - filter',
             '     - us/host', '     - x AllHostsFilter (paired rounds: '
             'median, range)', '     - target']
    for row in rows:
        target = ('' if row['target_ratio'] is None else
                  f"<= {row['target_ratio']}x: "
                  f"{'met' if row['meets_target'] else 'MISSED'}")
        lines += [f"   * - {row['hosts']}",
                  f"     - {row['capacity_source']}",
                  f"     - {row['filter']}",
                  f"     - {row['us_per_host']:.3f}; "
                  f"{row['us_per_host_median']:.3f}",
                  f"     - {row['ratio_to_all_hosts']:.2f} "
                  f"({row['ratio_to_all_hosts_paired_median']:.2f}, "
                  f"{row['ratio_to_all_hosts_paired_min']:.2f}-"
                  f"{row['ratio_to_all_hosts_paired_max']:.2f})",
                  f"     - {target}"]
    lines += ['', f"nova's default filter chain at {chain[0]['hosts']} "
                  f"hosts: best round (median round); growth of the best "
                  f"round over the bare chain's best, then the median and "
                  f"range of the growth over the bare chain timed in the "
                  f"same round; hosts passing:", '']
    for row in chain:
        growth = ('' if row['added'] is None else
                  f", {chain_growth(chain, row['added']):+.1%} "
                  f"(per round: median {row['growth_paired_median']:+.1%}, "
                  f"{row['growth_paired_min']:+.1%} to "
                  f"{row['growth_paired_max']:+.1%})")
        lines.append(f"- {row['added'] or 'default chain'}: "
                     f"{row['seconds'] * 1000:.1f} ms "
                     f"({row['seconds_median'] * 1000:.1f} ms){growth}; "
                     f"{row['passed']} hosts pass")
    lines.append('')
    missed = [v for v in document['verdicts'] if not v['met']]
    lines += [f"Targets: {len(document['verdicts']) - len(missed)} of "
              f"{len(document['verdicts'])} met.", '']
    lines += verdicts_report.rst_lines(document['verdicts'])
    lines.append('')
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
    figure, (cost, ratio) = pyplot.subplots(1, 2, figsize=(11, 4.5))
    series = {}
    for row in rows:
        label = f"{row['filter']} [{row['capacity_source']}]"
        series.setdefault(label, []).append(
            (row['hosts'], row['us_per_host'], row['ratio_to_all_hosts']))
    for label, points in sorted(series.items()):
        xs, ys, rs = zip(*sorted(points))
        cost.plot(xs, ys, marker='o', label=label)
        if not label.startswith(FLOOR):
            ratio.plot(xs, rs, marker='o', label=label)
    ratio.axhline(TARGET_SPEC, color='grey', linestyle='--',
                  label=f'target with a spec ({TARGET_SPEC}x)')
    for axis in (cost, ratio):
        axis.set_xscale('log')
        axis.set_xlabel('hosts')
    cost.set_ylabel('microseconds per host (best round)')
    ratio.set_ylabel(f'x {FLOOR} on the same hosts')
    cost.legend(fontsize=6)
    ratio.legend(fontsize=6)
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
    parser.add_argument('--gc', action='store_true',
                        help='keep the garbage collector on while timing, '
                             'as in nova-scheduler (noisier)')
    args = parser.parse_args(argv)
    load_before = _load()

    def progress(row):
        print(f"{row['hosts']:>7} {row['capacity_source']:>9} "
              f"{row['filter']:<45} {row['us_per_host']:8.3f} us/host "
              f"{row['ratio_to_all_hosts']:5.2f}x", flush=True)

    rows, chain = run(args.hosts, args.repeat, args.chain_hosts,
                      collect=args.gc, progress=progress)
    document = write(rows, chain, args.out, plot=not args.no_plot,
                     extra={'load_before': load_before,
                            'load_after': _load(), 'gc': args.gc,
                            'repeat': args.repeat})
    print(describe_machine(document))
    print(json.dumps(document['chain']))
    verdicts_report.print_all(document['verdicts'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
