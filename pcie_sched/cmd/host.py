"""nova.conf's view of the host, and where the CLI's QEMU facts come from.

``probe``, ``check`` and ``publish`` read nova's own ``[libvirt]``
options (``connection_uri``, ``virt_type``, ``hw_machine_type``) from
the ``--config-file``/``--config-dir`` sources, so an operator never
repeats them, and ask libvirt over that URI for the emulator, the
canonical machine type and the QEMU version (:mod:`pcie_sched.libvirt_host`).
Without config files, or when libvirt cannot be asked, the host's own
QEMU is looked up as before; every answer says which source it used.
"""

import contextlib
import dataclasses
import os
import typing as ty

from oslo_config import cfg

from pcie_sched import capacity
from pcie_sched.cmd import output
from pcie_sched import hostinfo
from pcie_sched import libvirt_host

#: nova's options, declared the same way (names, types, defaults). They
#: are read through a ConfigOpts of their own, never registered on the
#: global cfg.CONF: nova (imported in the same process by the driver and
#: the tests) registers its own there and refuses a different duplicate,
#: and the CLI must not need nova installed.
_NOVA_LIBVIRT_OPTS = (
    cfg.ListOpt('hw_machine_type'),
    cfg.StrOpt('connection_uri', default=''),
    cfg.StrOpt('virt_type', default='kvm'),
)

LIBVIRT = 'libvirt'
LOCAL = 'local'


@dataclasses.dataclass(frozen=True)
class NovaLibvirt:
    """nova's ``[libvirt]`` options as read from the config files."""

    hw_machine_type: ty.Tuple[str, ...]
    connection_uri: str
    virt_type: str

    @property
    def uri(self) -> str:
        """The URI nova-compute connects to (its default when empty)."""
        return self.connection_uri or libvirt_host.default_uri(
            self.virt_type)


def nova_libvirt(sources: ty.Sequence[str]) -> ty.Optional[NovaLibvirt]:
    """nova's ``[libvirt]`` options from ``sources``; None without any.

    Raises oslo.config's errors (``cfg.Error``) for unreadable files.
    """
    if not sources:
        return None
    loaded = cfg.ConfigOpts()
    loaded.register_opts(_NOVA_LIBVIRT_OPTS, group='libvirt')
    loaded(list(sources), project=None, prog='pcie-sched',
           default_config_files=[], default_config_dirs=[], use_env=False)
    group = loaded.libvirt
    return NovaLibvirt(tuple(group.hw_machine_type or ()),
                       group.connection_uri or '', group.virt_type)


def nova_machine_type(sources: ty.Sequence[str],
                      arch: str) -> ty.Optional[str]:
    """``arch``'s entry in ``[libvirt] hw_machine_type``, or None.

    Read from the same ``--config-file``/``--config-dir`` sources as the
    other options, and matched exactly as nova's
    ``libvirt.utils.get_default_machine_type`` does: the first
    ``arch=machine`` entry for ``arch`` wins, entries without a machine
    are skipped.
    """
    options = nova_libvirt(sources)
    for mapping in (options.hw_machine_type if options else ()):
        host_arch, _, machine_type = mapping.partition('=')
        if machine_type and host_arch == arch:
            return machine_type
    return None


def machine_and_source(args, default: str) -> ty.Tuple[str, str]:
    """(machine, ``option``/``config``/``default``) for the command.

    ``--machine``, else the arch's ``[libvirt] hw_machine_type`` entry,
    else ``default``.
    """
    if args.machine:
        return args.machine, 'option'
    machine = nova_machine_type(args.config_sources, args.arch)
    if machine is not None:
        return machine, 'config'
    return default, 'default'


def configured_host(args, default: str
                    ) -> ty.Optional[ty.Tuple[str, str, 'HostFacts']]:
    """The machine, its source and the host's facts, or None.

    For ``check`` and ``probe``: None once it said why the config cannot
    be read. An unreadable or invalid config file is a usage error (exit 2).
    """
    try:
        machine, source = machine_and_source(args, default)
    except (cfg.Error, ValueError) as exc:
        output.error(f'{exc}; accepted: readable oslo.config files '
                     f'(--config-file, --config-dir) with valid values')
        return None
    return machine, source, discover(args, machine)


@dataclasses.dataclass
class HostFacts:
    """The emulator, canonical machine and QEMU version, and their sources.

    ``source``: :data:`LIBVIRT` when libvirt answered, else :data:`LOCAL`
    (this host's QEMU, looked up and run as before); a value that could
    not be found at all is None with source None (the command reports
    the missing QEMU its own way later).
    """

    source: str
    note: str
    machine: str
    libvirt_uri: ty.Optional[str] = None
    libvirt_error: ty.Optional[str] = None
    emulator: ty.Optional[str] = None
    emulator_source: ty.Optional[str] = None
    canonical_machine: ty.Optional[str] = None
    canonical_machine_source: ty.Optional[str] = None
    qemu_version: ty.Optional[ty.Tuple[int, int]] = None
    qemu_version_source: ty.Optional[str] = None
    libvirt_loaders: ty.Optional[ty.List[str]] = None
    #: The machine the capacity model is given: canonical when the model
    #: knows that name, else the one configured.
    model_machine: str = ''
    #: Whether the direct probe boots libvirt's emulator.
    probe_uses_emulator: bool = False

    def report(self) -> dict:
        """The new JSON keys of probe, check and publish."""
        return {
            'host_source': self.source, 'host_note': self.note,
            'libvirt_uri': self.libvirt_uri,
            'libvirt_error': self.libvirt_error,
            'emulator': self.emulator,
            'emulator_source': self.emulator_source,
            'canonical_machine': self.canonical_machine,
            'canonical_machine_source': self.canonical_machine_source,
            'qemu_version': ('.'.join(map(str, self.qemu_version))
                             if self.qemu_version else None),
            'qemu_version_source': self.qemu_version_source,
            'libvirt_loaders': self.libvirt_loaders,
            'model_machine': self.model_machine,
        }

    @contextlib.contextmanager
    def emulator_used(self, arch: str):
        """The direct probe, inside the block, boots libvirt's emulator."""
        if not self.probe_uses_emulator:
            yield
            return
        with hostinfo.emulator_for(arch, self.emulator):
            yield


def _with_options(canonical: str, machine: str) -> str:
    _, comma, options = machine.partition(',')
    return canonical + comma + options


def _modelled(arch: str, canonical: ty.Optional[str], machine: str) -> str:
    if not canonical:
        return machine
    candidate = _with_options(canonical, machine)
    try:
        capacity.parse_machine(arch, candidate)
    except capacity.UnsupportedMachine:
        # A distribution's own machine names (pc-q35-rhel9.4.0): the
        # model knows the family by its alias only.
        return machine
    return candidate


def discover(args, machine: str) -> HostFacts:
    """Ask libvirt as nova-compute would; else this host's own QEMU."""
    arch = args.arch
    error = None
    uri = None
    try:
        options = nova_libvirt(args.config_sources)
        if options is not None:
            uri = options.uri
            view = libvirt_host.describe(uri, arch, machine,
                                         options.virt_type)
            return _from_libvirt(arch, machine, view)
    except libvirt_host.LibvirtError as exc:
        error = str(exc)
    facts = _local(arch, machine)
    facts.libvirt_uri = uri
    facts.libvirt_error = error
    if error:
        facts.note = (f'host: this host\'s own QEMU ({error}; falling back '
                      f'to the local lookup)')
    else:
        facts.note = ('host: this host\'s own QEMU (no --config-file, so '
                      'libvirt was not asked)')
    return facts


def _from_libvirt(arch, machine, view) -> HostFacts:
    caps = view.capabilities
    usable = os.path.isfile(caps.emulator) and os.access(caps.emulator,
                                                         os.X_OK)
    where = ('' if usable else
             f'; {caps.emulator} is not on this file system, so a direct '
             f'probe uses the local lookup')
    return HostFacts(
        source=LIBVIRT, machine=machine,
        note=(f'host: libvirt at {view.uri} (emulator {caps.emulator}, '
              f'{machine.split(",")[0]} is {caps.machine}, QEMU '
              f'{view.qemu_version_line}{where})'),
        libvirt_uri=view.uri, emulator=caps.emulator,
        emulator_source=LIBVIRT, canonical_machine=caps.machine,
        canonical_machine_source=LIBVIRT, qemu_version=view.qemu_version,
        qemu_version_source=LIBVIRT, libvirt_loaders=list(caps.loaders),
        model_machine=_modelled(arch, caps.machine, machine),
        probe_uses_emulator=usable)


def _local(arch, machine) -> HostFacts:
    facts = HostFacts(source=LOCAL, note='', machine=machine,
                      model_machine=machine)
    try:
        facts.emulator = hostinfo.qemu_binary(arch)
    except hostinfo.HostError:
        return facts
    facts.emulator_source = LOCAL
    try:
        _, facts.qemu_version = hostinfo.qemu_version(facts.emulator)
        facts.qemu_version_source = LOCAL
        aliases = hostinfo.machine_aliases(facts.emulator)
    except hostinfo.HostError:
        return facts
    name = machine.split(',')[0]
    facts.canonical_machine = aliases.get(name, name)
    facts.canonical_machine_source = LOCAL
    # The model keeps today's input (the machine as given, this QEMU's
    # version), which the canonical name would not change.
    return facts
