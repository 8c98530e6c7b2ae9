"""QEMU's memory against the number of root ports, on real QEMU (TCG).

For q35 + OVMF and q35 + SeaBIOS and each port count N, boot the probe's
payload with :func:`pcie_sched.topology.plan`'s ports (the command
:func:`pcie_sched.probe.qemu_command` builds, as ``boot_time.py`` runs
it: boot disk behind port 1, on the root bus at N = 0), wait for the
payload's marker on the serial port (the firmware has numbered every
port and reached the boot loader), then read the QEMU process's memory:

``/proc/<pid>/smaps_rollup``
    ``Rss`` and ``Pss`` (Pss charges shared library pages to every
    process that maps them, so it is what this guest adds to a host
    running many QEMUs).
``/proc/<pid>/status``
    ``VmRSS`` (the same as Rss, from the kernel's counters) and
    ``VmHWM``, the peak resident size since QEMU started.
``/proc/<pid>/smaps``
    the resident part of the guest's RAM (the anonymous mapping of the
    ``-m`` size) and of TCG's translation buffer (the anonymous
    executable mapping), so that what QEMU itself holds can be told
    apart from what the guest touched and from what only TCG needs.

Memory is read twice: at the marker, and once it has settled (right
after boot part of the resident size is memory QEMU has already freed
and gives back to the system a moment later; which allocations those
are is not measured here). The
marginal cost per port is ``(median(N) - median(0)) / N``. QEMU is then
killed with its process group and its scratch directory removed.

    python benchmarks/port_memory.py [--ports 0 8 max] [--repeat 3]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess  # nosec B404  # argument lists only, no shell
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import boot_time  # noqa: E402
from benchmarks import machine as machine_info  # noqa: E402
from pcie_sched import hostinfo  # noqa: E402
from pcie_sched import payload  # noqa: E402
from pcie_sched import probe  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
MACHINES = ('q35-uefi', 'q35-bios')
DEFAULT_PORTS = ('0', '8', '16', '32', '64', '128', 'max')
#: The guest RAM qemu_command gives (-m), in KiB.
GUEST_RAM_KIB = 512 * 1024
#: Settling: sample every SETTLE_STEP seconds until two samples in a row
#: differ by at most SETTLE_KIB, for at most SETTLE_TIMEOUT seconds.
SETTLE_STEP = 0.5
SETTLE_KIB = 128
SETTLE_TIMEOUT = 15.0
#: Figures kept per sample, all in KiB.
METRICS = ('rss', 'pss', 'pss_anon', 'vmrss', 'guest_ram_rss',
           'tcg_buffer_rss', 'qemu_own_rss')
_MAPPING = re.compile(r'^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$')


def _kib_fields(path, names):
    values = {}
    with open(path) as handle:
        for line in handle:
            key, _, rest = line.partition(':')
            if key in names:
                values[key] = int(rest.split()[0])
    return values


def _mappings(pid):
    """Resident KiB of the guest RAM mapping and of TCG's buffer."""
    ram = tcg = 0
    size = perms = name = None
    with open(f'/proc/{pid}/smaps') as handle:
        for line in handle:
            match = _MAPPING.match(line)
            if match:
                start, end, perms, name = match.groups()
                size = (int(end, 16) - int(start, 16)) // 1024
                continue
            if not line.startswith('Rss:') or name:
                continue
            rss = int(line.split()[1])
            if perms.startswith('rw') and 'x' not in perms and (
                    GUEST_RAM_KIB <= size <= GUEST_RAM_KIB + 4096):
                ram += rss
            elif perms == 'rwxp':
                tcg += rss
    return ram, tcg


def read_memory(pid):
    """One sample of a running process's memory, in KiB."""
    rollup = _kib_fields(f'/proc/{pid}/smaps_rollup',
                         {'Rss', 'Pss', 'Pss_Anon'})
    status = _kib_fields(f'/proc/{pid}/status', {'VmRSS', 'VmHWM'})
    ram, tcg = _mappings(pid)
    return {'rss': rollup['Rss'], 'pss': rollup['Pss'],
            'pss_anon': rollup.get('Pss_Anon'), 'vmrss': status['VmRSS'],
            'vmhwm': status['VmHWM'], 'guest_ram_rss': ram,
            'tcg_buffer_rss': tcg,
            'qemu_own_rss': rollup['Rss'] - ram - tcg}


def _settle(pid):
    """Sample until the resident size stops moving; (sample, seconds)."""
    start = time.monotonic()
    previous = read_memory(pid)
    while time.monotonic() - start < SETTLE_TIMEOUT:
        time.sleep(SETTLE_STEP)
        current = read_memory(pid)
        if abs(current['rss'] - previous['rss']) <= SETTLE_KIB:
            return current, round(time.monotonic() - start, 2)
        previous = current
    return previous, round(time.monotonic() - start, 2)


def measured_boot(arch, machine, firmware, plan, ports, cache):
    """Boot once to the marker; QEMU's memory there and once settled."""
    fw = hostinfo.firmware(arch, firmware)
    disk = payload.disk_image(arch, fw.kind, cache)
    workdir = tempfile.mkdtemp(prefix=probe.TEMP_PREFIX)
    process = None
    load = os.getloadavg()[0]
    try:
        command = boot_time._command(arch, machine, fw, plan, ports, disk,
                                     workdir)
        start = time.monotonic()
        process = subprocess.Popen(  # nosec B603
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        outcome, seconds = boot_time._wait_for_marker(process, start)
        sample = {'outcome': outcome, 'seconds': round(seconds, 3),
                  'load_average': round(load, 2)}
        if outcome == probe.BOOTED:
            sample['at_marker'] = read_memory(process.pid)
            sample['settled'], sample['settle_seconds'] = _settle(
                process.pid)
            sample['vmhwm'] = sample['settled'].pop('vmhwm')
            sample['at_marker'].pop('vmhwm')
        return sample
    finally:
        probe._stop(process)
        if process is not None:
            process.stdout.close()
            process.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _spread(values):
    return {'median': statistics.median(values), 'min': min(values),
            'max': max(values)}


def summarise(samples):
    """Median, min and max of every figure over the booted samples."""
    booted = [sample for sample in samples
              if sample['outcome'] == probe.BOOTED]
    row = {'outcomes': [sample['outcome'] for sample in samples],
           'booted': len(booted), 'samples': samples}
    if not booted:
        return row
    for phase in ('at_marker', 'settled'):
        row[phase] = {metric: _spread([sample[phase][metric]
                                       for sample in booted])
                      for metric in METRICS}
    row['vmhwm'] = _spread([sample['vmhwm'] for sample in booted])
    row['seconds'] = _spread([sample['seconds'] for sample in booted])
    row['load_average'] = max(sample['load_average'] for sample in samples)
    return row


def add_marginal(rows):
    """KiB each port adds over the same machine's N = 0 medians."""
    baseline = {row['machine']: row for row in rows
                if row['ports'] == 0 and row['booted']}
    for row in rows:
        base = baseline.get(row['machine'])
        row['kib_per_port'] = None
        if base is None or not row['ports'] or not row['booted']:
            continue
        row['kib_per_port'] = {
            phase: {metric: round((row[phase][metric]['median'] -
                                   base[phase][metric]['median']) /
                                  row['ports'], 1)
                    for metric in METRICS}
            for phase in ('at_marker', 'settled')}
        row['kib_per_port']['vmhwm'] = round(
            (row['vmhwm']['median'] - base['vmhwm']['median']) /
            row['ports'], 1)


def run_grid(machines, port_tokens, repeat, cache, say):
    rows = []
    for key in machines:
        arch, machine, firmware, label = boot_time.MACHINES[key]
        limit = boot_time.max_ports(arch, machine, firmware)
        counts = sorted({limit if token == 'max' else int(token)
                         for token in port_tokens})
        for count in counts:
            if count > limit:
                say(f'{label}: {count} ports exceed the model maximum '
                    f'{limit}; skipped')
                continue
            plan = boot_time.layout_plan('pcie-sched', arch, machine, count)
            # One boot at a time: the cores are shared.
            samples = [measured_boot(arch, machine, firmware, plan, count,
                                     cache) for _ in range(repeat)]
            row = {'machine': key, 'label': label, 'ports': count,
                   'max_ports': limit, **summarise(samples)}
            rows.append(row)
            say(json.dumps({name: value for name, value in row.items()
                            if name != 'samples'}))
    add_marginal(rows)
    return rows


def _mib(spread):
    if spread is None:
        return '-'
    return (f"{spread['median'] / 1024:.1f} "
            f"({spread['min'] / 1024:.1f}-{spread['max'] / 1024:.1f})")


def _per_port(row, phase, metric):
    if not row.get('kib_per_port'):
        return '-'
    if phase is None:
        return f"{row['kib_per_port'][metric]:.0f}"
    return f"{row['kib_per_port'][phase][metric]:.0f}"


def write(document, out_dir, plot=True):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'port_memory.json'), 'w') as handle:
        json.dump(document, handle, indent=2)
    lines = [machine_info.summary(document['machine']), '',
             'QEMU process memory with the plan\'s N root ports, after the '
             'firmware reached the payload (TCG, -m 512), median and '
             f"range of {document['repeat']} boots in MiB (all samples in "
             'port_memory.json). Rss and Pss from smaps_rollup at the '
             'marker; "settled" once Rss stopped moving (QEMU gives back '
             'memory freed during boot a moment later); "QEMU own" '
             'is settled Rss less the guest RAM touched and TCG\'s '
             'translation buffer; peak is VmHWM. KiB/port is '
             '(median(N) - median(0)) / N.', '',
             '.. list-table:: QEMU memory against root ports',
             '   :header-rows: 1', '',
             '   * - machine', '     - N', '     - booted',
             '     - Rss at marker', '     - Pss at marker',
             '     - Rss settled', '     - QEMU own settled',
             '     - peak (VmHWM)', '     - KiB/port Rss',
             '     - KiB/port Pss', '     - KiB/port settled',
             '     - KiB/port QEMU own', '     - KiB/port peak',
             '     - load']
    for row in document['rows']:
        booted = bool(row['booted'])
        marker, settled = row.get('at_marker'), row.get('settled')
        lines += [f"   * - {row['label']}", f"     - {row['ports']}",
                  f"     - {row['booted']}/{len(row['outcomes'])}",
                  f"     - {_mib(marker['rss'] if booted else None)}",
                  f"     - {_mib(marker['pss'] if booted else None)}",
                  f"     - {_mib(settled['rss'] if booted else None)}",
                  '     - ' + _mib(settled['qemu_own_rss']
                                   if booted else None),
                  f"     - {_mib(row['vmhwm'] if booted else None)}",
                  f"     - {_per_port(row, 'at_marker', 'rss')}",
                  f"     - {_per_port(row, 'at_marker', 'pss')}",
                  f"     - {_per_port(row, 'settled', 'rss')}",
                  f"     - {_per_port(row, 'settled', 'qemu_own_rss')}",
                  f"     - {_per_port(row, None, 'vmhwm')}",
                  f"     - {row.get('load_average', 0):.1f}"]
    if plot:
        lines += ['', '.. image:: ../../benchmarks/results/port_memory.png',
                  '']
        _plot(document['rows'], os.path.join(out_dir, 'port_memory.png'))
    with open(os.path.join(out_dir, 'port_memory.rst'), 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def _plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    figure, (total, marginal) = pyplot.subplots(1, 2, figsize=(10, 4))
    series = (('at_marker', 'rss', 'Rss at marker'),
              ('settled', 'rss', 'Rss settled'),
              ('vmhwm', None, 'peak (VmHWM)'))

    def spread(row, phase, metric):
        return row[phase] if metric is None else row[phase][metric]

    def per_port(row, phase, metric):
        value = row['kib_per_port'][phase]
        return value if metric is None else value[metric]

    for key in MACHINES:
        mine = [row for row in rows if row['machine'] == key and
                row['booted']]
        if not mine:
            continue
        label = boot_time.MACHINES[key][3]
        for phase, metric, name in series:
            xs = [row['ports'] for row in mine]
            spreads = [spread(row, phase, metric) for row in mine]
            ys = [value['median'] / 1024 for value in spreads]
            errors = [[(value['median'] - value['min']) / 1024
                       for value in spreads],
                      [(value['max'] - value['median']) / 1024
                       for value in spreads]]
            total.errorbar(xs, ys, yerr=errors, marker='o', capsize=3,
                           label=f'{label}, {name}')
        with_marginal = [row for row in mine if row.get('kib_per_port')]
        for phase, metric, name in series:
            marginal.plot([row['ports'] for row in with_marginal],
                          [per_port(row, phase, metric)
                           for row in with_marginal],
                          marker='o', label=f'{label}, {name}')
    marginal.axhline(700, color='grey', linestyle='--',
                     label='~700 KB reported upstream')
    total.set_xlabel('root ports N')
    total.set_ylabel('QEMU MiB (median, min-max)')
    total.set_ylim(bottom=0)
    total.legend(fontsize=7)
    marginal.set_xlabel('root ports N')
    marginal.set_ylabel('KiB per port over N = 0')
    marginal.set_ylim(bottom=0)
    marginal.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ports', nargs='+', default=list(DEFAULT_PORTS),
                        help="port counts; 'max' is the capacity model's "
                             "maximum for each machine")
    parser.add_argument('--machines', nargs='+', default=list(MACHINES),
                        choices=list(MACHINES))
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--out', default=RESULTS)
    parser.add_argument('--no-plot', action='store_true')
    args = parser.parse_args(argv)
    for token in args.ports:
        if token != 'max' and not token.isdigit():
            parser.error(f'--ports {token!r}: accepted: non-negative '
                         f'integers or max')
    if args.repeat < 1:
        parser.error(f'--repeat {args.repeat}: accepted: 1 or more')
    document = {'machine': machine_info.describe(), 'repeat': args.repeat,
                'guest_ram_mib': GUEST_RAM_KIB // 1024, 'accel': 'tcg'}
    with machine_info.scratch_cache() as cache:
        document['rows'] = run_grid(args.machines, args.ports, args.repeat,
                                    cache,
                                    lambda line: print(line, flush=True))
    document['load_average_at_end'] = machine_info.load_average()
    write(document, args.out, plot=not args.no_plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
