"""Run every benchmark and write results for the docs (tox -e bench).

Filter cost (timed, and counted by callgrind), guest boot time against
ports (with the port property and packing comparison), QEMU's memory
against ports and find-max model-guided against bisection. The
QEMU benchmarks run one after the other, one boot at a time.

    python benchmarks/run_all.py [--quick]
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import boot_time  # noqa: E402
from benchmarks import filter_cost  # noqa: E402
from benchmarks import filter_work  # noqa: E402
from benchmarks import find_max  # noqa: E402
from benchmarks import port_memory  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='small sizes, for a smoke run')
    args = parser.parse_args(argv)
    if args.quick:
        filter_cost.main(['--hosts', '100', '1000', '--chain-hosts', '1000',
                          '--repeat', '3'])
        filter_work.main(['--hosts', '100', '1000', '--chain-hosts', '1000',
                          '--sources', 'stats'])
        boot_time.main(['--ports', '0', '16', '--machines', 'q35-bios',
                        '--repeat', '1', '--variants', '--variant-machine',
                        'q35-bios', '--variant-ports', '16',
                        '--packing-ports', '16'])
        port_memory.main(['--ports', '0', '16', '--machines', 'q35-bios',
                          '--repeat', '1'])
        find_max.main(['--targets', 'q35-bios'])
    else:
        filter_cost.main([])
        filter_work.main([])
        boot_time.main(['--variants'])
        port_memory.main([])
        find_max.main([])
    return 0


if __name__ == '__main__':
    sys.exit(main())
