"""Guest boot time against the number of root ports, on real QEMU (TCG).

For each firmware and port count, boot the probe's payload with the
pcie-sched plan (8 ports per slot, io-reserve=0) and with nova's layout
(one port per slot, which stops at 28 ports on q35 by nova's own cap), and
report seconds and milliseconds per port. Also compares find-max
model-guided against pure bisection (boots and seconds).

    python benchmarks/boot_time.py [--ports 0 8 16 ...] [--firmware uefi bios]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pcie_sched import hostinfo  # noqa: E402
from pcie_sched import payload  # noqa: E402
from pcie_sched import probe  # noqa: E402
from pcie_sched import topology  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
NOVA_MAX_PORTS = 28


def nova_layout_boot(firmware, ports, cache):
    """nova's layout: one pcie-root-port per slot, no io-reserve."""
    plan = topology.plan(ports - 1, ['boot-disk'], 'x86_64', 'q35',
                         ports_per_slot=1)
    plan = topology.Plan(plan.arch, plan.machine, tuple(
        topology.RootPort(**{**port.__dict__, 'properties': {}})
        for port in plan.ports), plan.free_ports, plan.cold_plugged)
    fw = hostinfo.firmware('x86_64', firmware)
    disk = payload.disk_image('x86_64', fw.kind, cache)
    workdir = tempfile.mkdtemp(prefix='pcie-sched-probe-')
    command = probe.qemu_command('x86_64', 'q35', fw, plan, disk, workdir,
                                 'tcg')
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        outcome, _, _ = probe._watch(
            process, os.path.join(workdir, 'serial.log'),
            os.devnull, start, 300, 120)
    finally:
        probe._stop(process)
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return outcome, time.monotonic() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ports', type=int, nargs='+',
                        default=[1, 8, 16, 32, 64, 128, 232])
    parser.add_argument('--firmware', nargs='+', default=['uefi', 'bios'])
    parser.add_argument('--out', default=RESULTS)
    parser.add_argument('--find-max', action='store_true',
                        help='also compare find-max strategies '
                             '(aarch64 virt-2.11)')
    args = parser.parse_args(argv)
    cache = tempfile.mkdtemp(prefix='pcie-sched-bench-')
    rows = []
    for firmware in args.firmware:
        for ports in args.ports:
            result = probe.boot('x86_64', 'q35', firmware, max(ports, 1),
                                cache_dir=cache)
            rows.append({'firmware': firmware, 'ports': ports,
                         'layout': 'pcie-sched', 'outcome': result.outcome,
                         'seconds': result.seconds})
            if 1 <= ports <= NOVA_MAX_PORTS:
                outcome, seconds = nova_layout_boot(firmware, ports, cache)
                rows.append({'firmware': firmware, 'ports': ports,
                             'layout': 'nova (1 per slot)',
                             'outcome': outcome, 'seconds': seconds})
            print(json.dumps(rows[-1]), flush=True)
    searches = []
    if args.find_max:
        for strategy in ('model', 'bisect'):
            found = probe.find_max('aarch64', 'virt-2.11', 'uefi',
                                   strategy=strategy, use_cache=False,
                                   cache_dir=cache)
            searches.append({'strategy': strategy,
                             'max_ports': found.max_ports,
                             'boots': found.boots,
                             'seconds': found.seconds})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'boot_time.json'), 'w') as handle:
        json.dump({'boots': rows, 'find_max': searches}, handle, indent=2)
    lines = ['.. list-table:: q35 boot to the payload under TCG',
             '   :header-rows: 1', '', '   * - firmware', '     - ports',
             '     - layout', '     - outcome', '     - seconds',
             '     - ms per port']
    for row in rows:
        per_port = row['seconds'] * 1000 / max(row['ports'], 1)
        lines += [f"   * - {row['firmware']}", f"     - {row['ports']}",
                  f"     - {row['layout']}", f"     - {row['outcome']}",
                  f"     - {row['seconds']:.2f}", f"     - {per_port:.0f}"]
    for search in searches:
        lines += ['', f"find-max ({search['strategy']}): "
                      f"{search['max_ports']} ports, {search['boots']} boots,"
                      f" {search['seconds']:.1f} s"]
    with open(os.path.join(args.out, 'boot_time.rst'), 'w') as handle:
        handle.write('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
