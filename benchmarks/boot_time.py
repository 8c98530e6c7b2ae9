"""Guest boot time against the number of root ports, on real QEMU (TCG).

For each machine and firmware (q35+OVMF, q35+SeaBIOS, virt+AAVMF) and
each port count N, boot the probe's payload (boot disk behind port 1; at
N = 0 on the root bus) with three layouts:

``nova``
    one ``pcie-root-port`` per root bus slot and no port properties, up to
    nova's own cap of 28 ports (``[libvirt] num_pcie_ports``).
``libvirt``
    what libvirt 9 makes of N ``pcie-root-port`` controllers without
    addresses: eight functions per slot from the first free slot, no port
    properties (checked with ``virsh define``/``dumpxml``).
``pcie-sched``
    :func:`pcie_sched.topology.plan` (eight per slot, ``io-reserve=0``).

Every boot is timed the same way: from just before QEMU starts to the
arrival of the payload's marker on the serial port, which QEMU writes to
a pipe read here (millisecond resolution); tearing QEMU down is not
counted. After the timestamp, QMP ``query-pci`` tells which ports the
firmware gave an IO, memory and prefetchable window. The maximum N per
machine comes from :func:`pcie_sched.capacity.estimate`.

``--variants`` compares port properties and packing (q35+OVMF by
default, at 128 ports, and at 28 for packing, where one port per slot
still fits).

    python benchmarks/boot_time.py [--ports 0 8 16 max] [--machines ...]
"""

import argparse
import json
import os
import select
import shutil
import socket
import statistics
import subprocess  # nosec B404  # argument lists only, no shell
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import machine as machine_info  # noqa: E402
from pcie_sched import capacity  # noqa: E402
from pcie_sched import hostinfo  # noqa: E402
from pcie_sched import payload  # noqa: E402
from pcie_sched import probe  # noqa: E402
from pcie_sched import topology  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
#: nova's libvirt driver accepts at most 28 for num_pcie_ports.
NOVA_MAX_PORTS = 28
MACHINES = {
    'q35-uefi': ('x86_64', 'q35', 'uefi', 'q35 + OVMF'),
    'q35-bios': ('x86_64', 'q35', 'bios', 'q35 + SeaBIOS'),
    'virt-uefi': ('aarch64', 'virt', 'uefi', 'virt + AAVMF'),
}
LAYOUTS = ('nova', 'libvirt', 'pcie-sched')
DEFAULT_PORTS = ('0', '8', '16', '32', '64', '128', 'max')
#: Port property sets and packings compared on q35+OVMF by --variants:
#: (name, ports per slot, properties). Sizes are in bytes.
VARIANTS = (
    ('8/slot, io-reserve=0 (plan)', 8, {'io-reserve': 0}),
    ('8/slot, QEMU defaults', 8, {}),
    ('8/slot, io-reserve=0 mem-reserve=1M', 8,
     {'io-reserve': 0, 'mem-reserve': 1 << 20}),
    ('8/slot, io-reserve=0 pref64-reserve=0', 8,
     {'io-reserve': 0, 'pref64-reserve': 0}),
    ('8/slot, io-reserve=0 mem-reserve=1M pref64-reserve=0', 8,
     {'io-reserve': 0, 'mem-reserve': 1 << 20, 'pref64-reserve': 0}),
    ('8/slot, io-reserve=0 bus-reserve=0', 8,
     {'io-reserve': 0, 'bus-reserve': 0}),
)
#: Packing can only be compared where one port per slot still fits.
PACKING_VARIANTS = (
    ('1/slot, QEMU defaults (nova)', 1, {}),
    ('1/slot, io-reserve=0', 1, {'io-reserve': 0}),
    ('8/slot, QEMU defaults (libvirt)', 8, {}),
    ('8/slot, io-reserve=0 (plan)', 8, {'io-reserve': 0}),
)
TIMEOUT = 300.0


def max_ports(arch, machine, firmware):
    """The capacity model's maximum for this host's QEMU and firmware."""
    return probe.model_capacity(arch, machine, firmware).max_ports


def layout_plan(layout, arch, machine, ports, properties=None,
                ports_per_slot=None):
    """The plan of ``ports`` root ports (port 1 holds the boot disk)."""
    if layout == 'nova':
        ports_per_slot, default = 1, {}
    elif layout == 'libvirt':
        ports_per_slot, default = capacity.FUNCTIONS_PER_DEVICE, {}
    elif layout == 'pcie-sched':
        ports_per_slot = ports_per_slot or capacity.FUNCTIONS_PER_DEVICE
        default = dict(topology.DEFAULT_PORT_PROPERTIES)
    else:
        raise ValueError(f'layout={layout!r}; accepted: '
                         f'{", ".join(LAYOUTS)}')
    plan = topology.plan(max(ports, 1) - 1, ['boot-disk'], arch, machine,
                         ports_per_slot=ports_per_slot)
    properties = default if properties is None else properties
    return topology.Plan(plan.arch, plan.machine, tuple(
        topology.RootPort(**{**port.__dict__,
                             'properties': dict(properties)})
        for port in plan.ports), plan.free_ports, plan.cold_plugged)


def _command(arch, machine, fw, plan, ports, disk, workdir):
    command = probe.qemu_command(arch, machine, fw, plan, disk, workdir,
                                 'tcg')
    # The marker's arrival is read from a pipe, not polled from a file.
    command[command.index('-serial') + 1] = 'stdio'
    if ports == 0:
        # No ports at all: drop the one planned port, disk on the root bus.
        first = command.index('-device')
        del command[first:first + 2]
        command[-1] = command[-1].replace(f'bus={plan.ports[0].qemu_id}',
                                          'bus=pcie.0')
    # -no-shutdown keeps QEMU (and QMP) up after the payload powers off.
    return command + ['-no-shutdown', '-qmp',
                      f'unix:{os.path.join(workdir, "qmp.sock")},'
                      f'server=on,wait=off']


def timed_boot(arch, machine, firmware, plan, ports, cache):
    """Boot once; seconds to the marker, and the windows the ports got."""
    fw = hostinfo.firmware(arch, firmware)
    disk = payload.disk_image(arch, fw.kind, cache)
    workdir = tempfile.mkdtemp(prefix=probe.TEMP_PREFIX)
    process = None
    load = os.getloadavg()[0]
    try:
        command = _command(arch, machine, fw, plan, ports, disk, workdir)
        start = time.monotonic()
        process = subprocess.Popen(  # nosec B603
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        outcome, seconds = _wait_for_marker(process, start)
        windows = (_windows(os.path.join(workdir, 'qmp.sock'))
                   if outcome == probe.BOOTED and ports else {})
        return {'outcome': outcome, 'seconds': round(seconds, 3),
                'load_average': round(load, 2), **windows}
    finally:
        probe._stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_marker(process, start):
    raw = b''
    shell_seen_at = None
    stream = process.stdout.fileno()
    while True:
        ready, _, _ = select.select([stream], [], [], 0.05)
        now = time.monotonic()
        if ready:
            chunk = os.read(stream, 65536)
            if not chunk:
                return probe.QEMU_ERROR, now - start
            raw += chunk
        text = probe.clean_console(raw.decode('utf-8', errors='replace'))
        verdict, shell_seen_at = probe.classify_console(text, now,
                                                        shell_seen_at)
        if verdict is not None:
            return verdict, now - start
        if now - start > TIMEOUT:
            return probe.TIMEOUT, now - start


def _windows(path):
    """Root ports with an IO, 32-bit memory and prefetchable window."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        reader = sock.makefile('r')
        reader.readline()

        def execute(name):
            sock.sendall(json.dumps({'execute': name}).encode() + b'\n')
            while True:
                reply = json.loads(reader.readline())
                if 'return' in reply or 'error' in reply:
                    return reply.get('return')

        execute('qmp_capabilities')
        buses = execute('query-pci') or []
    counts = {'ports_seen': 0, 'io_windows': 0, 'memory_windows': 0,
              'prefetchable_windows': 0}
    sizes = {'memory': [], 'prefetchable': []}

    def size(window):
        if window is None or window['limit'] < window['base']:
            return 0
        return window['limit'] - window['base'] + 1

    def walk(devices):
        for device in devices:
            bridge = device.get('pci_bridge')
            if bridge is None:
                continue
            if device.get('qdev_id', '').startswith('pci.'):
                counts['ports_seen'] += 1
                bus = bridge['bus']
                counts['io_windows'] += bool(size(bus.get('io_range')))
                for kind, key in (('memory', 'memory_range'),
                                  ('prefetchable', 'prefetchable_range')):
                    window = size(bus.get(key))
                    counts[f'{kind}_windows'] += bool(window)
                    if window:
                        sizes[kind].append(window)
            walk(bridge.get('devices', []))

    for bus in buses:
        walk(bus['devices'])
    # The smallest window bounds which devices every port can take.
    for kind, values in sizes.items():
        counts[f'{kind}_window_min_bytes'] = min(values, default=0)
    return counts


def _best(samples):
    """The least disturbed of repeated boots (others share the cores)."""
    booted = [sample for sample in samples
              if sample['outcome'] == probe.BOOTED]
    chosen = min(booted or samples, key=lambda sample: sample['seconds'])
    return {**chosen, 'samples': [sample['seconds'] for sample in samples],
            'median_seconds': statistics.median(
                sample['seconds'] for sample in samples)}


def run_grid(machines, port_tokens, layouts, repeat, cache, say):
    rows = []
    for key in machines:
        arch, machine, firmware, label = MACHINES[key]
        limit = max_ports(arch, machine, firmware)
        requested = {limit if token == 'max' else int(token)
                     for token in port_tokens}
        jobs = {count: list(layouts) for count in requested}
        if 'nova' in layouts and max(requested) > NOVA_MAX_PORTS:
            # nova's own maximum, for nova's layout only.
            jobs.setdefault(NOVA_MAX_PORTS, ['nova'])
        for count, count_layouts in sorted(jobs.items()):
            if count > limit:
                say(f'{label}: {count} ports exceed the model maximum '
                    f'{limit}; skipped')
                continue
            # At N = 0 there are no ports: one boot is every layout's.
            for layout in (['none'] if count == 0 else count_layouts):
                if layout == 'nova' and count > NOVA_MAX_PORTS:
                    continue
                plan = layout_plan('pcie-sched' if layout == 'none'
                                   else layout, arch, machine, count)
                samples = [timed_boot(arch, machine, firmware, plan, count,
                                      cache) for _ in range(repeat)]
                row = {'machine': key, 'label': label, 'ports': count,
                       'max_ports': limit, 'layout': layout,
                       **_best(samples)}
                rows.append(row)
                say(json.dumps(row))
    _add_marginal(rows)
    return rows


def _add_marginal(rows):
    """Milliseconds each port adds over the same machine's N = 0 boot."""
    baseline = {row['machine']: row['seconds'] for row in rows
                if row['ports'] == 0 and row['outcome'] == probe.BOOTED}
    for row in rows:
        base = baseline.get(row['machine'])
        row['ms_per_port'] = (
            round((row['seconds'] - base) * 1000 / row['ports'], 1)
            if base is not None and row['ports'] else None)


def run_variants(key, ports, packing_ports, repeat, cache, say):
    arch, machine, firmware, label = MACHINES[key]
    rows = []
    for count, variants in ((ports, VARIANTS),
                            (packing_ports, PACKING_VARIANTS)):
        for name, per_slot, properties in variants:
            plan = layout_plan('pcie-sched', arch, machine, count,
                               properties=properties,
                               ports_per_slot=per_slot)
            samples = [timed_boot(arch, machine, firmware, plan, count,
                                  cache) for _ in range(repeat)]
            row = {'machine': key, 'label': label, 'ports': count,
                   'variant': name, 'ports_per_slot': per_slot,
                   'properties': properties, **_best(samples)}
            rows.append(row)
            say(json.dumps(row))
    return rows


def _cell(value, pattern='{}'):
    return '-' if value is None else pattern.format(value)


def _windows_cell(row):
    if 'ports_seen' not in row:
        return '-'
    text = (f"{row['memory_windows']}/{row['prefetchable_windows']}/"
            f"{row['io_windows']} of {row['ports_seen']}")
    if row.get('memory_window_min_bytes'):
        text += (f" (smallest {_mib(row['memory_window_min_bytes'])}/"
                 f"{_mib(row['prefetchable_window_min_bytes'])})")
    return text


def _mib(value):
    return f'{value / (1 << 20):g}M'


def write(document, out_dir, plot=True):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'boot_time.json'), 'w') as handle:
        json.dump(document, handle, indent=2)
    lines = [machine_info.summary(document['machine']), '',
             'Time from QEMU start to the payload marker on the serial '
             'port (best of '
             f"{document['repeat']}; all samples in boot_time.json). "
             'ms/port is (seconds - seconds at N=0) / N. Windows: ports '
             'with a 32-bit memory / prefetchable / IO window after '
             'the firmware ran (QMP query-pci), and the smallest memory '
             '/ prefetchable window where recorded.', '',
             '.. list-table:: Boot to the payload under TCG',
             '   :header-rows: 1', '',
             '   * - machine', '     - N', '     - layout',
             '     - outcome', '     - seconds', '     - ms/port',
             '     - windows mem/pref/io', '     - load']
    for row in document['boots']:
        lines += [f"   * - {row['label']}", f"     - {row['ports']}",
                  f"     - {row['layout']}", f"     - {row['outcome']}",
                  f"     - {row['seconds']:.2f}",
                  f"     - {_cell(row['ms_per_port'], '{:.0f}')}",
                  f"     - {_windows_cell(row)}",
                  f"     - {row['load_average']:.1f}"]
    if document['variants']:
        lines += ['', '.. list-table:: Port properties and packing, '
                      f"{document['variants'][0]['label']}",
                  '   :header-rows: 1', '',
                  '   * - N', '     - variant', '     - outcome',
                  '     - seconds', '     - windows mem/pref/io',
                  '     - load']
        for row in document['variants']:
            lines += [f"   * - {row['ports']}", f"     - {row['variant']}",
                      f"     - {row['outcome']}",
                      f"     - {row['seconds']:.2f}",
                      f"     - {_windows_cell(row)}",
                      f"     - {row['load_average']:.1f}"]
    if plot:
        lines += ['', '.. image:: ../../benchmarks/results/boot_time.png',
                  '']
        _plot(document['boots'], os.path.join(out_dir, 'boot_time.png'))
    with open(os.path.join(out_dir, 'boot_time.rst'), 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def _plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    keys = [key for key in MACHINES if any(row['machine'] == key
                                           for row in rows)]
    figure, axes = pyplot.subplots(1, max(len(keys), 1),
                                   figsize=(4.5 * max(len(keys), 1), 4),
                                   squeeze=False)
    for axis, key in zip(axes[0], keys):
        mine = [row for row in rows if row['machine'] == key and
                row['outcome'] == probe.BOOTED]
        base = [row for row in mine if row['ports'] == 0]
        for layout in LAYOUTS:
            points = sorted((row['ports'], row['seconds'])
                            for row in mine + base
                            if row['layout'] in (layout, 'none'))
            if len(points) > len(base):
                xs, ys = zip(*points)
                axis.plot(xs, ys, marker='o', label=layout)
        axis.set_title(MACHINES[key][3])
        axis.set_xlabel('root ports N')
        axis.set_ylabel('seconds to payload (TCG)')
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ports', nargs='+', default=list(DEFAULT_PORTS),
                        help="port counts; 'max' is the capacity model's "
                             "maximum for each machine")
    parser.add_argument('--machines', nargs='+', default=list(MACHINES),
                        choices=list(MACHINES))
    parser.add_argument('--layouts', nargs='+', default=list(LAYOUTS),
                        choices=list(LAYOUTS))
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--variants', action='store_true',
                        help='compare port properties and packing on '
                             'q35+OVMF')
    parser.add_argument('--variant-machine', default='q35-uefi',
                        choices=[key for key in MACHINES
                                 if key.startswith('q35')])
    parser.add_argument('--variant-ports', type=int, default=128)
    parser.add_argument('--packing-ports', type=int, default=NOVA_MAX_PORTS)
    parser.add_argument('--out', default=RESULTS)
    parser.add_argument('--no-plot', action='store_true')
    args = parser.parse_args(argv)
    for token in args.ports:
        if token != 'max' and not token.isdigit():
            parser.error(f'--ports {token!r}: accepted: non-negative '
                         f'integers or max')
    if args.repeat < 1:
        parser.error(f'--repeat {args.repeat}: accepted: 1 or more')
    document = {'machine': machine_info.describe(), 'repeat': args.repeat}
    with machine_info.scratch_cache() as cache:
        document['boots'] = run_grid(args.machines, args.ports,
                                     args.layouts, args.repeat, cache,
                                     lambda line: print(line, flush=True))
        document['variants'] = (
            run_variants(args.variant_machine, args.variant_ports,
                         args.packing_ports,
                         args.repeat, cache,
                         lambda line: print(line, flush=True))
            if args.variants else [])
    document['load_average_at_end'] = machine_info.load_average()
    write(document, args.out, plot=not args.no_plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
