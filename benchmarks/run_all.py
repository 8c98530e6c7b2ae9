"""Run every benchmark and write results for the docs (tox -e bench).

    python benchmarks/run_all.py [--quick]
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import boot_time  # noqa: E402
from benchmarks import filter_cost  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='small sizes, for a smoke run')
    args = parser.parse_args(argv)
    if args.quick:
        filter_cost.main(['--hosts', '100', '1000', '--chain-hosts', '1000',
                          '--repeat', '3'])
        boot_time.main(['--ports', '1', '16', '--firmware', 'uefi'])
    else:
        filter_cost.main([])
        boot_time.main([])
    return 0


if __name__ == '__main__':
    sys.exit(main())
