"""QEMU firmware descriptors: which firmware builds a host offers.

Distributions describe every firmware build they ship in a small JSON
file (QEMU's firmware interop specification, ``docs/interop/firmware.json``
in QEMU's tree): its interface (``uefi``, ``bios``...), how it is mapped
(``flash`` with a code file and a variable store template, or
``memory``), the architectures and machine type globs it supports and
its features (``secure-boot``, ``enrolled-keys``, ``requires-smm``...).
libvirt picks a guest's firmware from these files for
``<os firmware='efi'>``; this module reads them the same way so the
probe measures the build a guest really gets.

Pure: it reads files and nothing else (no QEMU, no libvirt). ``root``
lets tests point every path, the descriptors' own included, at a host
layout built in a temporary directory.
"""

import dataclasses
import fnmatch
import json
import os
import typing as ty

#: Where descriptors are looked for, lowest priority first: a file in a
#: later directory replaces the file of the same name in an earlier one,
#: and an empty file there hides it (QEMU's interop specification).
#: Relative to the root.
SYSTEM_DIRS = (
    # What the distribution's packages install.
    'usr/share/qemu/firmware',
    # The administrator's own or overriding descriptors.
    'etc/qemu/firmware',
)
# Not read: QEMU's per-user directory ($XDG_CONFIG_HOME/qemu/firmware).
# The firmware that counts is the one libvirt's system daemon gives nova's
# guests, and it reads only the directories above; the probe and
# nova-compute also run as different users, whose home directories would
# make them measure and look up different builds.

#: Flash formats QEMU maps and libvirt accepts from a descriptor.
FLASH_FORMATS = ('raw', 'qcow2')


class DescriptorError(ValueError):
    """A descriptor is unreadable, or none offers what was asked for."""


@dataclasses.dataclass(frozen=True)
class Target:
    architecture: str
    machines: ty.Tuple[str, ...]     # globs, e.g. 'pc-q35-*'


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """One descriptor file, its file paths resolved under the root."""

    path: str                        # the descriptor file read
    description: str
    interfaces: ty.Tuple[str, ...]
    device: str                      # 'flash', 'memory' or 'kernel'
    mode: str                        # flash: 'split', 'combined', ...
    code: str                        # executable / memory / kernel file
    code_format: str
    variables: ty.Optional[str]      # nvram template (split flash only)
    variables_format: ty.Optional[str]
    targets: ty.Tuple[Target, ...]
    features: ty.FrozenSet[str]

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def matches(self, arch: str, machine: str) -> bool:
        """True when a target lists ``arch`` and a glob for ``machine``.

        ``machine``: a canonical name such as ``pc-q35-7.2``.
        """
        return any(target.architecture == arch and any(
            fnmatch.fnmatchcase(machine, glob) for glob in target.machines)
            for target in self.targets)

    def machine_globs(self, arch: str) -> ty.List[str]:
        return [glob for target in self.targets
                if target.architecture == arch for glob in target.machines]

    @property
    def secure_boot(self) -> bool:
        return 'secure-boot' in self.features


def search_dirs(root: str = '/') -> ty.List[str]:
    """The descriptor directories, lowest priority first."""
    return [os.path.join(root, d) for d in SYSTEM_DIRS]


def descriptor_files(dirs: ty.Sequence[str]) -> ty.List[str]:
    """The descriptor files that count, in the order they are tried.

    Sorted by file name whatever directory holds them (so ``40-x.json``
    in /usr/share comes before ``50-y.json`` in /etc); the same name in
    a later directory replaces the earlier file, and an empty one hides
    it.
    """
    by_name: ty.Dict[str, str] = {}
    for directory in dirs:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DescriptorError(
                f'cannot list firmware descriptors in {directory}: '
                f'{exc.strerror or exc}')
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith('.json') and os.path.isfile(path):
                by_name[name] = path
    files = []
    for name in sorted(by_name):
        path = by_name[name]
        if os.path.getsize(path) == 0:
            continue
        files.append(path)
    return files


def _under(root: str, filename: str) -> str:
    return os.path.join(root, filename.lstrip('/'))


def parse(path: str, root: str = '/') -> Descriptor:
    """Read one descriptor.

    :class:`DescriptorError` names the file and what is wrong with it.
    """
    try:
        with open(path, encoding='utf-8') as handle:
            document = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DescriptorError(f'firmware descriptor {path} is not valid '
                              f'JSON: {exc}; accepted: a QEMU firmware '
                              f'descriptor (fix or remove the file)')
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptorError(f'cannot read firmware descriptor {path}: '
                              f'{getattr(exc, "strerror", None) or exc}')

    def bad(what: str) -> DescriptorError:
        return DescriptorError(f'firmware descriptor {path}: {what}; '
                               f'accepted: a QEMU firmware descriptor '
                               f'(interface-types, mapping, targets, '
                               f'features)')

    def strings(value, what) -> ty.Tuple[str, ...]:
        if not isinstance(value, list) or not all(
                isinstance(item, str) for item in value):
            raise bad(f'{what} is {value!r}, not a list of strings')
        return tuple(value)

    def file_entry(mapping, key) -> ty.Tuple[str, str]:
        entry = mapping.get(key)
        if not isinstance(entry, dict) or not isinstance(
                entry.get('filename'), str):
            raise bad(f'mapping.{key} is {entry!r}, not an object with a '
                      f'filename')
        return _under(root, entry['filename']), str(entry.get('format',
                                                              'raw'))

    if not isinstance(document, dict):
        raise bad(f'the top level is a {type(document).__name__}, not an '
                  f'object')
    interfaces = strings(document.get('interface-types'), 'interface-types')
    features = strings(document.get('features', []), 'features')
    mapping = document.get('mapping')
    if not isinstance(mapping, dict) or not isinstance(
            mapping.get('device'), str):
        raise bad(f'mapping is {mapping!r}, not an object with a device')
    device = mapping['device']
    mode = str(mapping.get('mode', 'split'))
    variables = variables_format = None
    if device == 'flash':
        code, code_format = file_entry(mapping, 'executable')
        if mode == 'split':
            variables, variables_format = file_entry(mapping,
                                                     'nvram-template')
    elif device in ('memory', 'kernel'):
        if not isinstance(mapping.get('filename'), str):
            raise bad(f'mapping for device {device!r} has no filename')
        code, code_format = _under(root, mapping['filename']), 'raw'
    else:
        raise bad(f'mapping.device is {device!r}; accepted: flash, memory, '
                  f'kernel')
    raw_targets = document.get('targets')
    if not isinstance(raw_targets, list):
        raise bad(f'targets is {raw_targets!r}, not a list')
    targets = []
    for target in raw_targets:
        if not isinstance(target, dict) or not isinstance(
                target.get('architecture'), str):
            raise bad(f'target {target!r} has no architecture')
        targets.append(Target(target['architecture'],
                              strings(target.get('machines'),
                                      'targets[].machines')))
    return Descriptor(path, str(document.get('description', '')),
                      interfaces, device, mode, code, code_format,
                      variables, variables_format, tuple(targets),
                      frozenset(features))


def load(root: str = '/') -> ty.List[Descriptor]:
    """Every descriptor of the host, in the order they are tried.

    A corrupt descriptor is an error, not skipped: libvirt refuses to
    autoselect any firmware then too, so skipping it would measure a
    build no guest gets.
    """
    return [parse(path, root)
            for path in descriptor_files(search_dirs(root))]


def for_interface(descriptors: ty.Iterable[Descriptor], arch: str,
                  interface: str) -> ty.List[Descriptor]:
    """Those offering ``interface`` for ``arch`` on any machine type."""
    return [d for d in descriptors if interface in d.interfaces and any(
        t.architecture == arch for t in d.targets)]


def candidates(descriptors: ty.Iterable[Descriptor], arch: str,
               machine: str, interface: str = 'uefi'
               ) -> ty.List[Descriptor]:
    """Those offering ``interface`` on ``arch`` + ``machine``, in order."""
    return [d for d in for_interface(descriptors, arch, interface)
            if d.matches(arch, machine)]


def refusal(descriptor: Descriptor, secure_boot: bool) -> ty.Optional[str]:
    """Why a guest does not get ``descriptor``; None when it does.

    The rules are libvirt's for ``<os firmware='efi'>`` as nova writes
    it: with Secure Boot off nova asks for the ``secure-boot`` feature
    to be absent and for a loader not restricted to SMM, so a build that
    has Secure Boot or requires SMM is skipped; with Secure Boot on the
    build must have it (nova does not ask for enrolled keys, so the
    first Secure Boot build wins, enrolled or not). The probe boots the
    files itself, so a build whose files are missing or whose mapping
    it cannot boot is skipped too.
    """
    if secure_boot and not descriptor.secure_boot:
        return 'no secure-boot feature'
    if not secure_boot and descriptor.secure_boot:
        return 'has secure-boot'
    if not secure_boot and 'requires-smm' in descriptor.features:
        return 'requires SMM'
    if descriptor.device == 'flash':
        if descriptor.mode != 'split':
            return f'flash mode {descriptor.mode!r}, not split'
        for fmt in (descriptor.code_format, descriptor.variables_format):
            if fmt not in FLASH_FORMATS:
                return f'flash format {fmt!r}'
    elif descriptor.device != 'memory':
        return f'device {descriptor.device!r}'
    for path in filter(None, (descriptor.code, descriptor.variables)):
        if not os.path.isfile(path):
            return f'{path} is missing'
    return None


def select(descriptors: ty.Sequence[Descriptor], arch: str, machine: str,
           interface: str = 'uefi', secure_boot: bool = False,
           searched: ty.Sequence[str] = ()) -> Descriptor:
    """The build a guest of ``arch`` + ``machine`` gets.

    That is the first candidate :func:`refusal` has nothing against.

    ``machine`` must be canonical (``pc-q35-7.2``, ``virt-7.2``): the
    descriptors' globs do not list aliases. ``searched``: the
    directories read, for the error message.
    """
    wanted = (f'{interface}{" with" if secure_boot else " without"} '
              f'Secure Boot' if interface == 'uefi' else interface)
    where = ', '.join(searched) or 'the descriptor directories'
    found = candidates(descriptors, arch, machine, interface)
    if not found:
        offered = sorted({glob for d in for_interface(descriptors, arch,
                                                      interface)
                          for glob in d.machine_globs(arch)})
        raise DescriptorError(
            f'no firmware descriptor offers {wanted} firmware for '
            f'arch={arch} machine={machine!r} (searched {where}; the '
            f'{arch} {interface} descriptors there list machines: '
            f'{", ".join(offered) or "none"}); accepted: a machine type '
            f'they list, a descriptor for this machine, or a path to a '
            f'firmware code file')
    reasons = []
    for descriptor in found:
        reason = refusal(descriptor, secure_boot)
        if reason is None:
            return descriptor
        reasons.append(f'{descriptor.name}: {reason}')
    raise DescriptorError(
        f'no usable {wanted} firmware for arch={arch} machine={machine!r} '
        f'among the descriptors in {where} ({"; ".join(reasons)}); '
        f'accepted: install the firmware package they describe, or a '
        f'path to a firmware code file')
