"""``pcie-sched cache``: list, verify and prune measured results.

The probe caches one ``find-max-<fingerprint>.json`` per QEMU, firmware
and machine type it measured. An upgrade of QEMU or the firmware leaves
the old entries behind, unused: nova-compute looks results up by the
current fingerprint only. This command shows each entry's state on this
host (:func:`pcie_sched.probe.entry_status`) and removes the ones that
can no longer be used.
"""

import os

from pcie_sched.cmd import output
from pcie_sched import probe

ACTIONS = ('list', 'verify', 'prune')
#: What ``prune`` removes unless told otherwise.
PRUNED_BY_DEFAULT = (probe.STALE, probe.CORRUPT)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'cache', help='list, verify or prune measured probe results',
        description='list: every find-max result in the cache with its '
                    'state on this host (current, stale, corrupt, '
                    'unknown). verify: the same, exit 1 unless every entry '
                    'is current. prune: remove stale and corrupt entries '
                    '(--all: every entry); nothing but find-max-*.json '
                    'files directly in the cache directory is ever '
                    'touched.')
    parser.add_argument('action', choices=ACTIONS)
    parser.add_argument('--cache-dir', default=None,
                        help='the cache to look at (default: '
                             '[pcie_sched_probe] cache_dir from '
                             '--config-file, else /var/cache/pcie-sched: '
                             'where nova-compute reads)')
    parser.add_argument('--all', action='store_true',
                        help='prune: remove every entry, current and '
                             'unknown ones too (nova-compute then uses the '
                             'model until find-max runs again)')
    parser.add_argument('--dry-run', action='store_true',
                        help='prune: say what would be removed, remove '
                             'nothing')
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def _describe(entry: probe.CacheEntry) -> dict:
    status, reason = probe.entry_status(entry)
    result = entry.result
    return {
        'file': os.path.basename(entry.path), 'path': entry.path,
        'fingerprint': entry.fingerprint, 'status': status,
        'reason': reason,
        'max_ports': None if result is None else result.max_ports,
        'arch': None if result is None else result.arch or None,
        'machine': None if result is None else result.machine or None,
        'firmware': None if result is None else result.firmware or None,
        'measured_at': (None if result is None else
                        result.measured_at or None),
    }


def run(args) -> int:
    if args.action != 'prune' and (args.all or args.dry_run):
        args.usage_error(f'argument --all/--dry-run: only with prune, not '
                         f'with {args.action}; accepted: cache prune '
                         f'[--all] [--dry-run]')
    directory = (os.path.abspath(args.cache_dir) if args.cache_dir else
                 probe.default_cache_dir())
    try:
        entries = probe.cache_entries(directory)
    except OSError as exc:
        output.error(f'cache_dir={directory!r}: {exc.strerror or exc}; '
                     f'accepted: a readable directory (--cache-dir or '
                     f'[pcie_sched_probe] cache_dir)')
        return 2
    described = [_describe(entry) for entry in entries]
    document = {'cache_dir': directory, 'entries': described,
                'counts': {state: sum(1 for item in described
                                      if item['status'] == state)
                           for state in probe.ENTRY_STATES}}
    status = 0
    if args.action == 'verify':
        status = 0 if all(item['status'] == probe.CURRENT
                          for item in described) else 1
    elif args.action == 'prune':
        status = _prune(args, directory, described, document)
    if args.format == 'json':
        output.emit_json(document)
    else:
        _print(args, document)
    return status


def _prune(args, directory, described, document) -> int:
    removed, failed, skipped = [], [], []
    for item in described:
        if not (args.all or item['status'] in PRUNED_BY_DEFAULT):
            continue
        # cache_entries lists only names directly in the directory; say
        # so again here, where a mistake would delete the wrong file.
        if (os.path.dirname(os.path.normpath(item['path'])) !=
                os.path.normpath(directory)):
            continue
        if os.path.isdir(item['path']) and not os.path.islink(item['path']):
            # The probe never makes one: not ours to remove.
            skipped.append({'path': item['path'],
                            'reason': 'a directory, not a probe result; '
                                      'remove it yourself if it is not '
                                      'needed'})
            continue
        if not args.dry_run:
            try:
                # A symbolic link is removed itself, never its target.
                os.unlink(item['path'])
            except FileNotFoundError:
                pass  # another prune got there first
            except OSError as exc:
                failed.append({'path': item['path'],
                               'error': exc.strerror or str(exc)})
                continue
        removed.append(item['path'])
    document['dry_run'] = args.dry_run
    document['removed'] = removed
    document['failed'] = failed
    document['skipped'] = skipped
    if failed:
        output.error(f'cache_dir={directory!r}: could not remove '
                     f'{len(failed)} entr{"y" if len(failed) == 1 else "ies"}'
                     f' ({failed[0]["path"]}: {failed[0]["error"]}); '
                     f'accepted: a cache directory this user may write')
        return 2
    return 0


def _print(args, document) -> None:
    entries = document['entries']
    print(f"{document['cache_dir']}: {len(entries)} "
          f"entr{'y' if len(entries) == 1 else 'ies'}" +
          (' (' + ', '.join(f'{count} {state}' for state, count in
                            document['counts'].items() if count) + ')'
           if entries else ''))
    for item in entries:
        what = ' '.join(
            str(item[key]) for key in ('arch', 'machine', 'firmware')
            if item[key]) or (
                'unreadable' if item['status'] == probe.CORRUPT else
                'machine not recorded')
        ports = ('' if item['max_ports'] is None else
                 f", {item['max_ports']} ports")
        when = (f", measured {item['measured_at']}"
                if item['measured_at'] else '')
        print(f"  {item['status']:8} {item['file']}: {what}{ports}{when}; "
              f"{item['reason']}")
    if args.action == 'prune':
        verb = 'would remove' if args.dry_run else 'removed'
        print(f"{verb} {len(document['removed'])}: " +
              (', '.join(os.path.basename(path)
                         for path in document['removed']) or 'nothing'))
        for item in document['skipped']:
            print(f"kept {os.path.basename(item['path'])}: {item['reason']}")
