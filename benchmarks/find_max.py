"""find-max: model-guided search against pure bisection, on real QEMU.

For each machine and firmware, :func:`pcie_sched.probe.find_max` runs
twice without its cache: ``strategy='model'`` (boot the capacity model's
prediction and one more) and ``strategy='bisect'`` (bisect 0 to the most
ports the root bus holds). Reported: the maximum found, boots and
seconds.

Bisection over 232-248 ports costs eight or nine boots, some of them
large, and a failing count on AAVMF costs the shell's grace period, so
each search has a time budget (``--budget``, default 300 s): the search
is stopped before its next boot once the budget is spent and the row
says ``capped`` with the boots and seconds spent so far.

    python benchmarks/find_max.py [--targets q35-uefi virt-2.11-uefi]
"""

import argparse
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import machine as machine_info  # noqa: E402
from pcie_sched import probe  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
TARGETS = {
    'q35-uefi': ('x86_64', 'q35', 'uefi', 'q35 + OVMF'),
    'q35-bios': ('x86_64', 'q35', 'bios', 'q35 + SeaBIOS'),
    'virt-uefi': ('aarch64', 'virt', 'uefi', 'virt + AAVMF'),
    'virt-2.11-uefi': ('aarch64', 'virt-2.11', 'uefi',
                       'virt-2.11 + AAVMF'),
}
STRATEGIES = ('model', 'bisect')
_STEP = re.compile(r'^(\d+) ports: (\S+) in ([0-9.]+)s$')


class BudgetSpent(Exception):
    """The search's time budget ran out before its next boot."""


def search(arch, machine, firmware, strategy, budget, cache, say):
    steps = []
    start = time.monotonic()

    def progress(message):
        say(f'  {message}')
        step = _STEP.match(message)
        if step:
            steps.append({'ports': int(step.group(1)),
                          'outcome': step.group(2),
                          'seconds': float(step.group(3))})
        elif message.startswith('booting') and (
                time.monotonic() - start > budget):
            raise BudgetSpent()

    try:
        found = probe.find_max(arch, machine, firmware, strategy=strategy,
                               use_cache=False, cache_dir=cache,
                               progress=progress)
    except BudgetSpent:
        booted = [step['ports'] for step in steps
                  if step['outcome'] == probe.BOOTED]
        return {'max_ports': max(booted, default=None), 'capped': True,
                'boots': len(steps),
                'seconds': round(time.monotonic() - start, 1),
                'model_max_ports': probe.model_capacity(
                    arch, machine, firmware).max_ports,
                'steps': steps}
    return {'max_ports': found.max_ports, 'capped': False,
            'boots': found.boots, 'seconds': found.seconds,
            'model_max_ports': found.model_max_ports, 'steps': steps}


def write(document, out_dir, plot=True):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'find_max.json'), 'w') as handle:
        json.dump(document, handle, indent=2)
    lines = [machine_info.summary(document['machine']), '',
             f"Each search has a budget of {document['budget']:g} s; a "
             f"capped search stops before its next boot and shows the "
             f"largest count that booted so far.", '',
             '.. list-table:: find-max, model-guided vs bisection (TCG)',
             '   :header-rows: 1', '',
             '   * - machine', '     - strategy', '     - model says',
             '     - found', '     - boots', '     - seconds']
    for row in document['searches']:
        if row['max_ports'] is None:
            found = 'none booted' + (' (capped)' if row['capped'] else '')
        elif row['capped']:
            found = f">= {row['max_ports']} (capped)"
        else:
            found = str(row['max_ports'])
        lines += [f"   * - {row['label']}", f"     - {row['strategy']}",
                  f"     - {row['model_max_ports']}", f"     - {found}",
                  f"     - {row['boots']}",
                  f"     - {row['seconds']:.1f}"]
    if plot:
        lines += ['', '.. image:: ../../benchmarks/results/find_max.png', '']
        _plot(document['searches'], os.path.join(out_dir, 'find_max.png'))
    with open(os.path.join(out_dir, 'find_max.rst'), 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def _plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    labels = list(dict.fromkeys(row['label'] for row in rows))
    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
    width = 0.4
    for offset, strategy in enumerate(STRATEGIES):
        mine = {row['label']: row for row in rows
                if row['strategy'] == strategy}
        xs = [index + (offset - 0.5) * width for index in range(len(labels))]
        for axis, key in zip(axes, ('boots', 'seconds')):
            axis.bar(xs, [mine[label][key] if label in mine else 0
                          for label in labels], width, label=strategy)
    for axis, key in zip(axes, ('boots', 'seconds')):
        axis.set_xticks(range(len(labels)))
        axis.set_xticklabels(labels, rotation=20, fontsize=7)
        axis.set_ylabel(key)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--targets', nargs='+', default=list(TARGETS),
                        choices=list(TARGETS))
    parser.add_argument('--strategies', nargs='+', default=list(STRATEGIES),
                        choices=list(STRATEGIES))
    parser.add_argument('--budget', type=float, default=300.0,
                        help='seconds per search before it is capped')
    parser.add_argument('--out', default=RESULTS)
    parser.add_argument('--no-plot', action='store_true')
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f'--budget {args.budget:g}: accepted: seconds > 0')
    document = {'machine': machine_info.describe(), 'budget': args.budget,
                'searches': []}
    with machine_info.scratch_cache() as cache:
        for key in args.targets:
            arch, machine, firmware, label = TARGETS[key]
            for strategy in args.strategies:
                print(f'{label}, {strategy}:', flush=True)
                row = search(arch, machine, firmware, strategy, args.budget,
                             cache, lambda line: print(line, flush=True))
                row.update({'target': key, 'label': label,
                            'strategy': strategy})
                document['searches'].append(row)
                print(json.dumps({k: v for k, v in row.items()
                                  if k != 'steps'}), flush=True)
    document['load_average_at_end'] = machine_info.load_average()
    write(document, args.out, plot=not args.no_plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
