"""Measure what this host's real QEMU and firmware boot.

:func:`boot` starts QEMU with the port plan :mod:`pcie_sched.topology`
would give a guest (the boot disk from :mod:`pcie_sched.payload` behind
the last port) and watches the serial console:

``booted``
    the payload's marker appeared: the firmware enumerated the ports and
    reached the disk behind the last port, so every port up to it got a
    bus number and the windows its device needed.
``firmware-shell``
    the firmware gave up on booting: the UEFI shell found no file system
    at all ("map: No mapping found."), a ``Shell>`` prompt stayed without
    the marker for :data:`SHELL_GRACE` seconds, the UEFI boot manager
    fallback ("No bootable option or device was found", firmware builds
    without a shell), or SeaBIOS's "No bootable device".
``hang``
    QEMU is still running, no verdict yet, and the serial log has not
    grown for ``stall_timeout`` seconds (measured from QEMU's start when
    the firmware never printed anything).
``qemu-error``
    QEMU exited before the payload ran; ``detail`` holds its message.
``timeout``
    no verdict within ``timeout`` and the console had not been silent
    for ``stall_timeout`` yet.

Only a verdict from the firmware decides whether a count boots. A hang
or timeout says something about the firmware only when the console was
silent for at least :data:`CONCLUSIVE_SILENCE` seconds at the end (the
longest a working boot stays silent, with a margin): a console that was
still changing, or silent for less, is a boot cut short, and
:func:`find_max` stops rather than cache a maximum that a timeout
bounds (:func:`undecided`).

QEMU always runs in its own process group and is killed and reaped on
every path out of :func:`boot` (verdict, exception, Ctrl-C); its private
temporary directory (serial log, firmware variable store) goes with it.
:func:`find_max` searches for the largest bootable count, starting from
the capacity model's prediction, and caches the answer under a
fingerprint of the QEMU binary, the firmware file and the machine type.
"""

import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess  # nosec B404  # argument lists only, no shell
import tempfile
import time
import typing as ty

from oslo_config import cfg
from oslo_log import log as logging

from pcie_sched import capacity
from pcie_sched import hostinfo
from pcie_sched import interrupts
from pcie_sched import payload
from pcie_sched import topology

BOOTED = 'booted'
FIRMWARE_SHELL = 'firmware-shell'
HANG = 'hang'
QEMU_ERROR = 'qemu-error'
TIMEOUT = 'timeout'
OUTCOMES = (BOOTED, FIRMWARE_SHELL, HANG, QEMU_ERROR, TIMEOUT)

DEFAULT_TIMEOUT = 300.0
DEFAULT_STALL_TIMEOUT = 120.0
#: A hang or timeout counts as the firmware being stuck only after this
#: many seconds without console output. OVMF prints nothing on the
#: serial console until its boot manager runs, after every port has
#: been enumerated: q35 + OVMF with 232 ports under TCG was silent for
#: its first 29-33 s (booted in 37-38 s, load average 3-5) and booted
#: in 43 s at load 7-8. ``[pcie_sched_probe] boot_timeout`` and
#: ``stall_timeout`` may not be set lower (see pcie_sched/conf/probe.py).
CONCLUSIVE_SILENCE = 60.0
#: After a UEFI shell prompt, how long a startup.nsh payload may take to
#: print its marker (AAVMF counts down 5 seconds first).
SHELL_GRACE = 15.0
_POLL = 0.2
#: Outcomes that say nothing about the firmware: a TCG guest on a busy
#: host can stall once (seen: 1 of 12 AAVMF boots with 248 ports, on
#: virt-3.0, sat silent for 120 s; the other 11 on virt and virt-3.0
#: booted in 20-29 s). find_max boots once more before it counts such a
#: count as not booting.
INCONCLUSIVE = (HANG, TIMEOUT)
RETRIES = 1
#: Every probe's private temp directory starts with this.
TEMP_PREFIX = 'pcie-sched-probe-'
#: Bumped whenever the boot recipe changes, so cached results expire.
#: 2: the boot disk moved from the first port to the last.
RECIPE_VERSION = 2

_ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
_SHELL_PROMPT = re.compile(r'Shell> ?')
_NO_BOOT_DEVICE = re.compile(r'No bootable device')
# The UEFI shell's startup mapping table: no file system at all means the
# ESP behind the last port was not enumerated, and startup.nsh cannot run.
_NO_MAPPING = re.compile(r'map: No mapping found')
# edk2's BdsDxe when no boot option works and no shell is built in.
_NO_BOOT_OPTION = re.compile(r'No bootable option or device was found')
# edk2 with Secure Boot keys enrolled (Debian's *.ms.fd variable stores):
# the boot disk was reached, but the unsigned payload refused.
# Only a boot option on a PCI device path counts: the built-in shell in
# the firmware volume, Fv(...), is refused the same way.
_SECURE_BOOT = re.compile(r'failed to (?:load|start) Boot[0-9A-Fa-f]{4} '
                          r'"[^"\n]*" from PciRoot[^:\n]*: '
                          r'(?:Access Denied|Security Violation)')
SECURE_BOOT_REFUSED = 'Secure Boot refused the unsigned probe payload'
#: Said of a hang or timeout under KVM with nothing on the console: seen
#: on hosts where /dev/kvm exists but KVM guests never run (here: OVMF
#: under -accel kvm, silent for 290 s with QEMU at 0 s of CPU time, while
#: TCG boots it in 8 s).
KVM_SILENT = ('nothing at all on the serial console under -accel kvm: the '
              'accelerator, not the port count, is the likely cause (as '
              'on hosts where /dev/kvm exists but KVM guests never run); '
              'accepted: --accel tcg ([pcie_sched_probe] accel = tcg), '
              'which measures the same firmware limits')


LOG = logging.getLogger(__name__)
#: Cache files (and cache lookups that failed) already reported, so the
#: periodic resource update logs each once.
_WARNED_UNREADABLE: ty.Set[str] = set()


class ProbeError(RuntimeError):
    """The probe could not run (missing QEMU, firmware, tools...)."""


@dataclasses.dataclass(frozen=True)
class BootResult:
    outcome: str
    seconds: float
    ports: int
    arch: str
    machine: str
    firmware: str
    detail: str = ''
    serial_tail: str = ''
    #: Bytes the firmware and payload wrote to the serial console.
    console_bytes: int = 0
    #: Seconds the console had been silent when the verdict came.
    silent_seconds: float = 0.0
    #: The accelerator QEMU ran with (``auto`` resolved): tcg or kvm.
    accel: str = ''

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FindMaxResult:
    max_ports: int
    boots: int
    seconds: float
    model_max_ports: int
    limited_by: str
    strategy: str
    fingerprint: str
    steps: ty.Tuple[ty.Tuple[int, str, float], ...]
    cached: bool = False
    #: Why the result could not be cached ('' when it was, or came from
    #: the cache); the measurement itself is still valid.
    cache_error: str = ''
    #: What was measured: arch, machine and firmware as asked for, the
    #: firmware code file they resolved to, the fingerprint's inputs
    #: (:func:`fingerprint_inputs`) and when (UTC, ISO 8601). Entries
    #: cached before these were recorded have them empty; with them, a
    #: measurement that an upgrade made stale can still be recognised
    #: (:func:`stale_measurements`, ``pcie-sched cache``).
    arch: str = ''
    machine: str = ''
    firmware: str = ''
    firmware_code: str = ''
    inputs: ty.Tuple[ty.Tuple[str, str], ...] = ()
    measured_at: str = ''

    def to_dict(self) -> dict:
        document = dataclasses.asdict(self)
        document['steps'] = [
            {'ports': ports, 'outcome': outcome, 'seconds': seconds}
            for ports, outcome, seconds in self.steps]
        document['inputs'] = dict(self.inputs)
        return document


def clean_console(raw: str) -> str:
    """Serial output without terminal escapes and carriage returns."""
    return _ANSI.sub('', raw).replace('\r', '\n')


def marker_seen(text: str) -> bool:
    return any(line.strip() == payload.MARKER for line in text.split('\n'))


def classify_console(text: str, now: float, shell_seen_at: ty.Optional[float]
                     ) -> ty.Tuple[ty.Optional[str], ty.Optional[float]]:
    """A verdict from the console so far, or None to keep watching.

    Returns ``(outcome, shell_seen_at)``; the caller passes the second
    value back in so the shell grace period survives between polls.
    """
    if marker_seen(text):
        return BOOTED, shell_seen_at
    if (_NO_BOOT_DEVICE.search(text) or _NO_MAPPING.search(text) or
            _NO_BOOT_OPTION.search(text)):
        return FIRMWARE_SHELL, shell_seen_at
    if _SHELL_PROMPT.search(text):
        if shell_seen_at is None:
            shell_seen_at = now
        elif now - shell_seen_at >= SHELL_GRACE:
            return FIRMWARE_SHELL, shell_seen_at
    return None, shell_seen_at


def default_cache_dir() -> str:
    """``[pcie_sched_probe] cache_dir``: the same for every user.

    The probe (often run by root) writes here and nova-compute (another
    user) reads here; a per-user default would let them silently disagree.
    """
    from pcie_sched import conf
    return conf.CONF.pcie_sched_probe.cache_dir


def _option_value(value: str) -> str:
    """``value`` as one QEMU option value: a comma is written twice.

    Without this a path such as ``/srv/a,b`` would end the ``file=``
    value early and the rest would be read as further options.
    """
    return value.replace(',', ',,')


def qemu_command(arch: str, machine: str, fw: hostinfo.Firmware,
                 plan: topology.Plan, disk: str, workdir: str,
                 accel: str, extra_devices: ty.Sequence[str] = (),
                 disk_bus: ty.Optional[str] = None) -> ty.List[str]:
    """QEMU's argument list: no network, no host devices, no display.

    ``extra_devices``: ``-device`` values added after the plan's ports,
    e.g. one more port at an address the plan never uses, to ask QEMU
    and the firmware rather than the planner. ``disk_bus``: the id of
    the port the boot disk goes behind (default: the plan's last).
    """
    command = [hostinfo.qemu_binary(arch), '-machine', machine,
               '-accel', accel, '-m', '512', '-nodefaults', '-no-user-config',
               '-display', 'none', '-monitor', 'none', '-net', 'none',
               '-serial', f'file:{os.path.join(workdir, "serial.log")}']
    if arch == 'aarch64':
        command += ['-cpu', 'max' if accel == 'kvm' else 'cortex-a57']
    if fw.kind == 'uefi':
        variables = os.path.join(workdir, 'vars.fd')
        shutil.copyfile(fw.variables, variables)
        command += [
            '-drive', f'if=pflash,format={fw.code_format},readonly=on,'
                      f'file={_option_value(fw.code)}',
            '-drive', f'if=pflash,format={fw.variables_format},'
                      f'file={_option_value(variables)}']
    else:
        command += ['-bios', fw.code]
    command += topology.to_qemu_args(plan)
    for device in extra_devices:
        command += ['-device', device]
    # Behind the last port: the firmware reaches it only after it has
    # numbered every port before it, so "booted" covers the whole plan,
    # not just its first port.
    command += ['-drive', f'if=none,id=bootdisk,format=raw,readonly=on,'
                          f'file={_option_value(disk)}',
                '-device', f'virtio-blk-pci,drive=bootdisk,'
                           f'bus={disk_bus or plan.ports[-1].qemu_id}']
    return command


def probe_plan(ports: int, arch: str, machine: str,
               root_bus_devices: ty.Optional[int] = None) -> topology.Plan:
    """The plan a guest with ``ports`` root ports in total would get.

    ``root_bus_devices``: root bus slots kept free before the first port
    (default: what a nova guest keeps, :data:`topology.ROOT_BUS_DEVICES`;
    0 probes the machine's own root bus limit). The boot disk goes
    behind the last port (:func:`qemu_command`).
    """
    if isinstance(ports, bool) or not isinstance(ports, int) or ports < 1:
        raise ProbeError(f'ports={ports!r}: expected an integer of at least '
                         f'1 (the boot disk needs a port)')
    try:
        return topology.plan(ports, (), arch, machine,
                             root_bus_devices=root_bus_devices)
    except topology.TopologyError as exc:
        raise ProbeError(str(exc)) from exc


def _resolve_accel(accel: str) -> str:
    if accel == 'auto':
        return 'kvm' if hostinfo.kvm_usable() else 'tcg'
    if accel == 'kvm' and not hostinfo.kvm_usable():
        raise ProbeError('accel=kvm asked for but /dev/kvm is not usable; '
                         'accepted: tcg, or auto to use KVM when available')
    if accel not in ('tcg', 'kvm'):
        raise ProbeError(f'accel={accel!r}; accepted: tcg, kvm, auto')
    return accel


def _cache_dir_error(cache_dir: str, exc: OSError) -> str:
    return (f'cache_dir={cache_dir!r}: {exc.strerror or exc} '
            f'({exc.filename or cache_dir}); accepted: a writable directory '
            f'with free space (--cache-dir or [pcie_sched_probe] cache_dir)')


def _temp_dir_error(exc: OSError) -> str:
    return (f'cannot prepare or start the probe boot: {exc}; needs a '
            f'writable temporary directory with free space '
            f'(TMPDIR={tempfile.gettempdir()!r}) and an executable QEMU')


def boot(arch: str, machine: str, firmware: str = 'uefi', ports: int = 1, *,
         timeout: float = DEFAULT_TIMEOUT,
         stall_timeout: float = DEFAULT_STALL_TIMEOUT,
         accel: str = 'tcg', cache_dir: ty.Optional[str] = None,
         root_bus_devices: ty.Optional[int] = None,
         extra_devices: ty.Sequence[str] = (),
         disk_bus: ty.Optional[str] = None) -> BootResult:
    """Boot once with ``ports`` root ports and say how it went.

    ``root_bus_devices``, ``extra_devices`` and ``disk_bus``: see
    :func:`probe_plan` and :func:`qemu_command`.
    """
    cache_dir = cache_dir or default_cache_dir()
    try:
        # Everything missing is reported before anything is built or run.
        hostinfo.qemu_binary(arch)
        fw = hostinfo.firmware(arch, firmware, machine)
        plan = probe_plan(ports, arch, machine, root_bus_devices)
        accel = _resolve_accel(accel)
        disk = payload.disk_image(arch, fw.kind, cache_dir)
    except (hostinfo.HostError, payload.PayloadError) as exc:
        raise ProbeError(str(exc)) from exc
    except OSError as exc:
        # The payload is cached there: an unwritable or full cache
        # directory is the operator's to fix, not a crash.
        raise ProbeError(_cache_dir_error(cache_dir, exc)) from exc
    try:
        workdir = tempfile.mkdtemp(prefix=TEMP_PREFIX)
    except OSError as exc:
        raise ProbeError(_temp_dir_error(exc)) from exc
    process = None
    try:
        command = qemu_command(arch, machine, fw, plan, disk, workdir, accel,
                               extra_devices, disk_bus)
        stderr_path = os.path.join(workdir, 'qemu.stderr')
        start = time.monotonic()
        # A Ctrl-C inside Popen, after the fork but before ``process`` is
        # bound, would leave QEMU running in its own session unknown to
        # the cleanup below: the signal waits until the handle is held.
        with open(stderr_path, 'wb') as stderr, interrupts.held():
            process = subprocess.Popen(  # nosec B603
                command, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)
        outcome, detail, text, console = _watch(
            process, os.path.join(workdir, 'serial.log'), stderr_path,
            start, timeout, stall_timeout)
        now = time.monotonic()
        if accel == 'kvm' and outcome in INCONCLUSIVE and not console.size:
            detail = f'{detail}; {KVM_SILENT}'
        return BootResult(outcome, round(now - start, 3), ports, arch,
                          machine, firmware, detail, text[-400:],
                          console_bytes=console.size,
                          silent_seconds=round(now - console.changed, 3),
                          accel=accel)
    except OSError as exc:
        # Copying the variable store, writing the serial log or starting
        # QEMU failed: a full temp file system or an unusable binary.
        raise ProbeError(_temp_dir_error(exc)) from exc
    finally:
        # A second Ctrl-C while QEMU is reaped must not skip the rest.
        with interrupts.held():
            _stop(process)
            shutil.rmtree(workdir, ignore_errors=True)


class _Console(ty.NamedTuple):
    #: Bytes on the serial console, and when that last changed.
    size: int
    changed: float


def _watch(process, serial_path, stderr_path, start, timeout,
           stall_timeout) -> ty.Tuple[str, str, str, _Console]:
    """Watch until a verdict: (outcome, detail, console text, _Console)."""
    text = ''
    size = -1
    last_change = start
    shell_seen_at = None

    def verdict_of(outcome, detail):
        return outcome, detail, text, _Console(max(size, 0), last_change)
    while True:
        now = time.monotonic()
        # Poll before reading: a payload that prints the marker and powers
        # off at once must be judged on everything QEMU wrote before it
        # exited, not on a read taken just before the marker landed.
        status = process.poll()
        try:
            with open(serial_path, 'rb') as serial:
                raw = serial.read()
        except FileNotFoundError:
            raw = b''
        if len(raw) != size:
            # The first read of an empty or missing log is no output.
            if raw or size > 0:
                last_change = now
            size = len(raw)
            text = clean_console(raw.decode('utf-8', errors='replace'))
        verdict, shell_seen_at = classify_console(text, now, shell_seen_at)
        if verdict is not None:
            return verdict_of(verdict, _verdict_detail(verdict, text))
        if status is not None:
            with open(stderr_path, 'rb') as stderr:
                message = stderr.read().decode('utf-8', errors='replace')
            message = message.strip().splitlines()
            return verdict_of(
                QEMU_ERROR, message[-1] if message else
                f'QEMU exited with status {status} before the payload ran')
        if now - start >= timeout:
            return verdict_of(TIMEOUT, f'no verdict within {timeout:g}s')
        if now - last_change >= stall_timeout:
            if shell_seen_at is not None:
                # Sitting silent at its own prompt is the firmware's shell,
                # even when stall_timeout is shorter than SHELL_GRACE.
                return verdict_of(FIRMWARE_SHELL,
                                  _verdict_detail(FIRMWARE_SHELL, text))
            return verdict_of(HANG, f'console silent for {stall_timeout:g}s '
                                    f'while QEMU kept running')
        time.sleep(_POLL)


def _verdict_detail(outcome: str, text: str = '') -> str:
    if outcome == BOOTED:
        return 'the payload behind the last port ran'
    if outcome != FIRMWARE_SHELL:
        return ''
    if _SECURE_BOOT.search(text):
        # Not a port limit: no count would boot with these keys enrolled.
        return (f'{SECURE_BOOT_REFUSED} (console: '
                f'{_SECURE_BOOT.search(text).group(0)!r}); probe the same '
                f'firmware code with a variable store without enrolled keys')
    seen = [pattern.pattern for pattern in (_NO_MAPPING, _NO_BOOT_OPTION,
                                            _NO_BOOT_DEVICE, _SHELL_PROMPT)
            if pattern.search(text)]
    why = f' (console: {seen[0].strip()!r})' if seen else ''
    return (f'the firmware stopped without reaching the boot disk behind '
            f'the last port{why}')


def _stop(process) -> None:
    if process is None:
        return
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - kernel stuck
        process.kill()
        process.wait()


def model_capacity(arch: str, machine: str, firmware: str,
                   qemu_version: ty.Optional[ty.Tuple[int, int]] = None
                   ) -> capacity.Capacity:
    """The model's answer for this host's QEMU version and firmware kind.

    ``qemu_version``: when known otherwise (from libvirt), QEMU is not
    run to ask it. Raises :class:`ProbeError` when QEMU or the firmware
    is missing (the message names the Debian package) and
    :class:`pcie_sched.capacity.UnsupportedMachine` for a machine the
    model does not know.
    """
    try:
        fw = hostinfo.firmware(arch, firmware, machine)
        version = qemu_version or hostinfo.qemu_version(
            hostinfo.qemu_binary(arch))[1]
    except hostinfo.HostError as exc:
        raise ProbeError(str(exc)) from exc
    return capacity.estimate(topology.machine_profile(arch, machine, fw.kind,
                                                      version))


#: The fingerprint's inputs, in the order they are hashed.
INPUT_NAMES = ('recipe', 'arch', 'machine', 'qemu', 'qemu-binary',
               'firmware', 'vars')


def fingerprint_inputs(arch: str, machine: str,
                       firmware: str) -> ty.Dict[str, str]:
    """What a measured maximum depends on: QEMU, firmware, machine.

    Keyed by :data:`INPUT_NAMES`; raises :class:`hostinfo.HostError`
    when QEMU or the firmware is missing.
    """
    binary = hostinfo.qemu_binary(arch)
    version_line, _ = hostinfo.qemu_version(binary)
    fw = hostinfo.firmware(arch, firmware, machine)
    # The variable store decides too: the same Secure Boot code with
    # Microsoft's keys enrolled refuses the probe's unsigned payload.
    variables = hostinfo.file_digest(fw.variables) if fw.variables else '-'
    return {'recipe': str(RECIPE_VERSION), 'arch': arch, 'machine': machine,
            'qemu': version_line, 'qemu-binary': hostinfo.file_digest(binary),
            'firmware': f'{fw.kind}:{fw.digest()}', 'vars': variables}


def _digest(inputs: ty.Mapping[str, str]) -> str:
    """The fingerprint of ``inputs``; KeyError if one is missing."""
    import hashlib
    text = '\n'.join(f'{name}={inputs[name]}' for name in INPUT_NAMES)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(arch: str, machine: str, firmware: str) -> str:
    """The cache key of a measurement: a hash of its inputs."""
    return _digest(fingerprint_inputs(arch, machine, firmware))


def _cache_path(cache_dir: str, key: str) -> str:
    return os.path.join(cache_dir, f'find-max-{key}.json')


def load_cached(arch: str, machine: str, firmware: str,
                cache_dir: ty.Optional[str] = None
                ) -> ty.Optional[FindMaxResult]:
    """The cached find-max result for this host's current binaries."""
    try:
        key = fingerprint(arch, machine, firmware)
        path = _cache_path(cache_dir or default_cache_dir(), key)
    except (hostinfo.HostError, OSError, cfg.Error) as exc:
        # nova-compute asks on every resource update: a bad cache_dir or
        # a vanished firmware file must fall back to the model, not stop
        # the node from reporting, and is said once, not every minute.
        message = f'{arch} {machine}: {exc}'
        if message not in _WARNED_UNREADABLE:
            _WARNED_UNREADABLE.add(message)
            LOG.warning('No measured capacity for %s', message)
        return None
    try:
        with open(path) as handle:
            result = _from_document(json.load(handle))
    except PermissionError as exc:
        # A result is there but this user may not read it: the reported
        # capacity silently falls back to the model unless someone says so.
        if path not in _WARNED_UNREADABLE:
            _WARNED_UNREADABLE.add(path)
            LOG.warning('Measured capacity %(path)s cannot be read by this '
                        'user (%(error)s); using the capacity model '
                        'instead. Make [pcie_sched_probe] cache_dir and '
                        'the file readable by this user (directories 0755, '
                        'result 0644).', {'path': path, 'error': exc})
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Missing or corrupt: measure again rather than trust.
        return None
    return result if result.fingerprint == key else None


def _from_document(document: ty.Any) -> FindMaxResult:
    """A cached result from its JSON; KeyError, TypeError or ValueError."""
    steps = tuple((int(s['ports']), str(s['outcome']),
                   float(s['seconds'])) for s in document['steps'])
    inputs = document.get('inputs') or {}
    if not isinstance(inputs, dict):
        raise TypeError(f'inputs={inputs!r}: not a mapping')
    return FindMaxResult(
        int(document['max_ports']), int(document['boots']),
        float(document['seconds']), int(document['model_max_ports']),
        str(document['limited_by']), str(document['strategy']),
        str(document['fingerprint']), steps, cached=True,
        arch=str(document.get('arch', '')),
        machine=str(document.get('machine', '')),
        firmware=str(document.get('firmware', '')),
        firmware_code=str(document.get('firmware_code', '')),
        inputs=tuple((str(name), str(value))
                     for name, value in inputs.items()),
        measured_at=str(document.get('measured_at', '')))


def load_cached_max(arch: str, machine: str, firmware: str,
                    cache_dir: ty.Optional[str] = None, *,
                    warn_stale: bool = True) -> ty.Optional[int]:
    """The measured maximum for this host's current binaries, or None.

    What nova-compute's driver asks on every resource update. When there
    is none but the cache holds measurements of the same arch, machine
    and firmware under other binaries (a QEMU or firmware upgrade), a
    WARNING says so and how to re-measure, once per cache directory and
    current fingerprint (``warn_stale=False``: the caller says it).
    """
    result = load_cached(arch, machine, firmware, cache_dir)
    if result is not None:
        return result.max_ports
    if warn_stale:
        _warn_if_stale(arch, machine, firmware, cache_dir)
    return None


#: (cache_dir, current fingerprint) already warned about as stale.
_WARNED_STALE: ty.Set[ty.Tuple[str, str]] = set()


def _warn_if_stale(arch, machine, firmware, cache_dir) -> None:
    try:
        key = (cache_dir or default_cache_dir(),
               fingerprint(arch, machine, firmware))
    except (hostinfo.HostError, OSError, cfg.Error):
        return  # load_cached has said why, once
    if key in _WARNED_STALE:
        return
    stale = stale_measurements(arch, machine, firmware, key[0])
    if stale:
        _WARNED_STALE.add(key)
        LOG.warning('%s', stale_message(arch, machine, firmware, stale,
                                        key[0]))


CURRENT = 'current'
STALE = 'stale'
CORRUPT = 'corrupt'
UNKNOWN = 'unknown'
ENTRY_STATES = (CURRENT, STALE, CORRUPT, UNKNOWN)
_ENTRY_NAME = re.compile(r'find-max-(.+)\.json')
#: Larger than any result the probe writes (a few KiB).
_ENTRY_MAX_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One ``find-max-<fingerprint>.json`` file in a cache directory."""
    path: str
    #: From the file name: what the driver looks the entry up by.
    fingerprint: str
    result: ty.Optional[FindMaxResult]
    #: Why the entry cannot be trusted ('' when it can be read).
    problem: str = ''


def cache_entries(cache_dir: str) -> ty.List[CacheEntry]:
    """Every result entry directly in ``cache_dir``, sorted by name.

    Only names the probe writes (``find-max-*.json``) count; staged files
    (``.find-max-*``), payloads and anything else are not entries. A
    missing directory has none; an unreadable one raises OSError.
    """
    try:
        listing = sorted(os.scandir(cache_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    entries = []
    for item in listing:
        match = _ENTRY_NAME.fullmatch(item.name)
        if not match:
            continue
        entries.append(_read_entry(item, match.group(1)))
    return entries


def _read_entry(item: os.DirEntry, key: str) -> CacheEntry:
    def corrupt(problem):
        return CacheEntry(item.path, key, None, problem)
    if item.is_symlink() or not item.is_file(follow_symlinks=False):
        return corrupt('not a regular file (the probe writes only regular '
                       'files)')
    try:
        with open(item.path, 'rb') as handle:
            raw = handle.read(_ENTRY_MAX_BYTES + 1)
    except OSError as exc:
        return corrupt(f'cannot be read: {exc.strerror or exc}')
    if len(raw) > _ENTRY_MAX_BYTES:
        return corrupt(f'larger than {_ENTRY_MAX_BYTES} bytes')
    try:
        result = _from_document(json.loads(raw.decode('utf-8')))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return corrupt('not valid JSON')
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return corrupt(f'not a find-max result ({type(exc).__name__}: '
                       f'{exc})')
    if result.fingerprint != key:
        return CacheEntry(item.path, key, result,
                          f'its fingerprint {result.fingerprint!r} is not '
                          f'the one in its file name')
    if result.inputs:
        try:
            matches = _digest(dict(result.inputs)) == key
        except KeyError as exc:
            return CacheEntry(item.path, key, result,
                              f'its recorded inputs lack {exc}')
        if not matches:
            return CacheEntry(item.path, key, result,
                              'its recorded inputs do not hash to its '
                              'fingerprint')
    return CacheEntry(item.path, key, result)


def describe_changes(measured: ty.Mapping[str, str],
                     now: ty.Mapping[str, str]) -> str:
    """What differs between a measurement's inputs and this host's."""
    said = []
    if measured.get('recipe') != now['recipe']:
        said.append(f"probe recipe {measured.get('recipe')} -> "
                    f"{now['recipe']}")
    if measured.get('qemu') != now['qemu']:
        said.append(f"QEMU {measured.get('qemu')!r} -> {now['qemu']!r}")
    elif measured.get('qemu-binary') != now['qemu-binary']:
        said.append('QEMU binary changed (same version line)')
    if measured.get('firmware') != now['firmware']:
        said.append(f"firmware code changed ({measured.get('firmware')} "
                    f"-> {now['firmware']})")
    if measured.get('vars') != now['vars']:
        said.append('firmware variable store changed')
    for name in ('arch', 'machine'):
        if measured.get(name) != now[name]:
            said.append(f'{name} {measured.get(name)!r} -> {now[name]!r}')
    return '; '.join(said) or 'nothing recorded differs'


def entry_status(entry: CacheEntry) -> ty.Tuple[str, str]:
    """(one of :data:`ENTRY_STATES`, why) for ``entry`` on this host."""
    if entry.problem:
        return CORRUPT, entry.problem
    result = entry.result
    if not (result.arch and result.machine and result.firmware and
            result.inputs):
        return UNKNOWN, ('written before pcie-sched recorded what it '
                         'measured; nova-compute uses it only while its '
                         'fingerprint matches (find-max --no-cache records '
                         'it)')
    try:
        now = fingerprint_inputs(result.arch, result.machine,
                                 result.firmware)
    except (hostinfo.HostError, OSError) as exc:
        return STALE, f'measured binaries no longer here: {exc}'
    if _digest(now) == entry.fingerprint:
        return CURRENT, 'matches this host\'s QEMU and firmware'
    return STALE, describe_changes(dict(result.inputs), now)


def stale_measurements(arch: str, machine: str, firmware: str,
                       cache_dir: ty.Optional[str] = None
                       ) -> ty.List[ty.Dict[str, ty.Any]]:
    """Measurements of this arch, machine and firmware an upgrade outdated.

    Non-empty only when the cache holds none for the current fingerprint
    but some for the same arch, machine and firmware (as asked for, or
    the same firmware code file) under other binaries or another probe
    recipe: the host has silently gone from measured capacity to the
    model's. Each is ``{'path', 'max_ports', 'measured_at', 'changed'}``.
    Never raises: a host that cannot be fingerprinted has no answer here
    (:func:`load_cached` reports why).
    """
    try:
        cache_dir = cache_dir or default_cache_dir()
        now = fingerprint_inputs(arch, machine, firmware)
        code = os.path.realpath(
            hostinfo.firmware(arch, firmware, machine).code)
        entries = cache_entries(cache_dir)
    except (hostinfo.HostError, OSError, cfg.Error):
        return []
    key = _digest(now)
    found = []
    for entry in entries:
        result = entry.result
        if entry.problem or result is None:
            continue
        if entry.fingerprint == key:
            return []
        if (result.arch, result.machine) != (arch, machine) or not (
                result.firmware == firmware or (
                    result.firmware_code and
                    os.path.realpath(result.firmware_code) == code)):
            continue
        found.append({'path': entry.path, 'max_ports': result.max_ports,
                      'measured_at': result.measured_at,
                      'changed': describe_changes(dict(result.inputs), now)})
    return found


def remeasure_command(arch: str, machine: str, firmware: str,
                      cache_dir: ty.Optional[str] = None) -> str:
    """The command that measures again into the cache nova-compute reads.

    With the config files this process read (nova-compute's own), so the
    probe writes where the driver looks; ``--cache-dir`` when
    ``cache_dir`` is not the configured one.
    """
    from pcie_sched import conf
    try:
        files = list(conf.CONF.config_file or ())
        configured = default_cache_dir()
    except cfg.Error:
        files, configured = [], None
    words = ['pcie-sched', 'probe', '--find-max', '--arch', arch,
             '--machine', machine, '--firmware', firmware]
    for path in files or ['/etc/nova/nova.conf']:
        words += ['--config-file', path]
    if cache_dir and cache_dir != configured:
        words += ['--cache-dir', cache_dir]
    return ' '.join(shlex.quote(word) for word in words)


def stale_message(arch: str, machine: str, firmware: str,
                  stale: ty.Sequence[ty.Mapping[str, ty.Any]],
                  cache_dir: ty.Optional[str] = None) -> str:
    """The warning for :func:`stale_measurements`' answer."""
    newest = max(stale, key=lambda item: item['measured_at'])
    command = remeasure_command(arch, machine, firmware, cache_dir)
    when = newest['measured_at'] or 'at an unknown time'
    return (f'Measured PCIe root port capacity for {arch} {machine} '
            f'{firmware} is stale: the cache holds {len(stale)} '
            f'measurement(s) for other binaries (latest: '
            f'{newest["max_ports"]} ports, measured {when}, '
            f'{newest["path"]}; since then: {newest["changed"]}), none '
            f'for this host\'s QEMU and firmware, so the capacity model is '
            f'used instead. Re-measure: {command}; list or prune old '
            f'entries with pcie-sched cache list|prune')


def _store(cache_dir: str, result: FindMaxResult) -> None:
    payload.make_shared_dir(cache_dir)
    # Milliseconds of work: held whole, a Ctrl-C cannot land between
    # mkstemp and the cleanup that removes the staged file.
    with interrupts.held():
        handle, staged = tempfile.mkstemp(prefix='.find-max-',
                                          dir=cache_dir)
        try:
            with os.fdopen(handle, 'w') as out:
                # mkstemp makes 0600 files; nova-compute, usually not the
                # user who probed, must read the result. No secret in it.
                os.fchmod(out.fileno(), payload.SHARED_FILE_MODE)
                document = result.to_dict()
                document.pop('cached')
                document.pop('cache_error')
                json.dump(document, out, indent=2, sort_keys=True)
            os.replace(staged, _cache_path(cache_dir, result.fingerprint))
        except BaseException:
            os.unlink(staged)
            raise


def find_max(arch: str, machine: str, firmware: str = 'uefi', *,
             strategy: str = 'model', use_cache: bool = True,
             cache_dir: ty.Optional[str] = None,
             progress: ty.Optional[ty.Callable[[str], None]] = None,
             **boot_options) -> FindMaxResult:
    """The largest number of root ports this host boots.

    ``strategy='model'`` boots the model's prediction and one more (two
    boots when the model is right; one when one more does not even fit
    the root bus), and falls back to bisection around it otherwise.
    ``strategy='bisect'`` bisects the whole range without the model.
    A count whose boot hangs or times out is booted once more before it
    counts as not booting (see :data:`INCONCLUSIVE`), and only if the
    console had then been silent for :data:`CONCLUSIVE_SILENCE`: a boot
    that ``timeout`` or ``stall_timeout`` cut short raises
    :class:`ProbeError` naming the option to raise, and nothing is
    cached (:func:`undecided`). Every boot is in ``steps``.
    """
    if strategy not in ('model', 'bisect'):
        raise ProbeError(f'strategy={strategy!r}; accepted: model, bisect')
    for option in ('root_bus_devices', 'extra_devices', 'disk_bus'):
        if option in boot_options:
            # The cache key and the model describe the plan nova guests
            # get; another layout is for single boots only.
            raise ProbeError(f'{option}={boot_options[option]!r}: not '
                             f'accepted by find_max; use boot()')
    cache_dir = cache_dir or default_cache_dir()
    try:
        inputs = fingerprint_inputs(arch, machine, firmware)
        key = _digest(inputs)
        code = hostinfo.firmware(arch, firmware, machine).code
        model = model_capacity(arch, machine, firmware)
    except (hostinfo.HostError, capacity.UnsupportedMachine) as exc:
        raise ProbeError(str(exc)) from exc
    if use_cache:
        cached = load_cached(arch, machine, firmware, cache_dir)
        if cached is not None:
            return cached
    say = progress or (lambda message: None)
    limit = _plan_limit(arch, machine)
    steps = []
    results = []
    start = time.monotonic()

    def once(count: int) -> BootResult:
        say(f'booting with {count} root ports ...')
        result = boot(arch, machine, firmware, count,
                      cache_dir=cache_dir, **boot_options)
        steps.append((count, result.outcome, result.seconds))
        results.append(result)
        say(f'{count} ports: {result.outcome} in {result.seconds:.1f}s'
            + (f' ({result.detail})' if result.outcome in INCONCLUSIVE
               else ''))
        return result

    def boots(count: int) -> bool:
        if count > limit:
            say(f'{count} ports: do not fit the root bus (at most {limit})')
            return False
        result = conclusive(lambda: once(count))
        if (accelerator_suspect(result) and count > 1 and
                not any(outcome == BOOTED for _, outcome, _ in steps)):
            # Nothing on the console under KVM, and no count has booted:
            # one port tells a KVM that runs no guest from a firmware
            # limit, before a bisection of such hangs takes an hour.
            say('no console output under KVM: booting 1 root port to tell '
                'the accelerator from the firmware ...')
            if accelerator_suspect(once(1)):
                raise ProbeError(f'accel=kvm: ports={count} and ports=1 '
                                 f'both: {KVM_SILENT}; nothing cached')
        why = undecided(result, suspect_accel=False)
        if why:
            # A boot cut short says nothing about the firmware: counting
            # it as "does not boot" would cache a maximum that the
            # timeout, not the firmware, set (seen: 29 for 232, --timeout
            # 5). Stop, and store nothing.
            raise ProbeError(f'ports={count}: {why}; nothing cached')
        if result.detail.startswith(SECURE_BOOT_REFUSED):
            # Every count would fail the same way; a maximum of 0 cached
            # for this firmware would be wrong, so measure nothing.
            raise ProbeError(f'firmware={firmware!r}: {result.detail}')
        if result.outcome == QEMU_ERROR:
            # Counts past the root bus are never booted, so QEMU refusing
            # to start says nothing about ports (KVM missing, a bad
            # option); caching it as a maximum would reject this host
            # until the next upgrade.
            raise ProbeError(f'ports={count}: QEMU failed to start '
                             f'({result.detail}); accepted: a QEMU and '
                             f'firmware that start, then find-max again')
        return result.outcome == BOOTED

    if strategy == 'model':
        best = _model_guided(model.max_ports, limit, boots)
    else:
        best = _bisect(0, limit + 1, boots)
    if not any(outcome == BOOTED for _, outcome, _ in steps):
        # Not even the smallest count booted: the host, not the port
        # count, is what fails; store nothing rather than a maximum of 0.
        tried = ', '.join(f'{count}: {outcome}'
                          for count, outcome, _ in steps)
        hint = (f'; {KVM_SILENT}' if results and
                accelerator_suspect(results[-1]) else '')
        raise ProbeError(f'no port count booted ({tried}){hint}; accepted: '
                         f'a QEMU and firmware that boot, then find-max '
                         f'again')
    result = FindMaxResult(
        best, len(steps), round(time.monotonic() - start, 3),
        model.max_ports, model.limited_by, strategy, key, tuple(steps),
        arch=arch, machine=machine, firmware=firmware, firmware_code=code,
        inputs=tuple(inputs.items()),
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'))
    return store_or_warn(cache_dir, result, say)


def store_or_warn(cache_dir: str, result: FindMaxResult,
                  say: ty.Callable[[str], None]) -> FindMaxResult:
    """Cache ``result``; if the cache cannot take it, say so and go on.

    The boots were expensive and their answer is right; a full or
    read-only cache only costs the next run the same boots again.
    """
    try:
        _store(cache_dir, result)
    except OSError as exc:
        message = _cache_dir_error(cache_dir, exc)
        say(f'warning: result not cached: {message}')
        return dataclasses.replace(result, cache_error=message)
    closed = payload.unreadable_by_others(cache_dir)
    if closed is not None:
        say(f'warning: {closed!r} is not searchable by other users, so '
            f'nova-compute running as another user cannot read this '
            f'result from cache_dir={cache_dir!r}; accepted: every '
            f'directory on the path mode o+x (e.g. chmod 755 {closed})')
    return result


def undecided(result: BootResult, *,
              suspect_accel: bool = True) -> ty.Optional[str]:
    """Why ``result`` does not tell whether its count boots, or None.

    Booted, firmware-shell and qemu-error are verdicts. A hang or timeout
    is one only when the console had been silent for at least
    :data:`CONCLUSIVE_SILENCE` seconds: the firmware had stopped showing
    progress for longer than a working boot ever does. Otherwise the
    boot was cut short by ``timeout`` or ``stall_timeout`` and the
    message names the option to raise. Under KVM, a guest that printed
    nothing at all is no answer either (:func:`accelerator_suspect`),
    unless ``suspect_accel`` is false (find_max has ruled KVM out).
    """
    if result.outcome not in INCONCLUSIVE:
        return None
    if suspect_accel and accelerator_suspect(result):
        return (f'{result.outcome} after {result.seconds:g}s with '
                f'{KVM_SILENT}')
    if result.silent_seconds >= CONCLUSIVE_SILENCE:
        return None
    if result.outcome == TIMEOUT:
        cut = (f'the boot timed out after {result.seconds:g}s ('
               f'{result.detail}; the console was silent for the last '
               f'{result.silent_seconds:g}s)')
        option = ('a boot timeout (--timeout, [pcie_sched_probe] '
                  'boot_timeout)')
    else:
        cut = (f'the boot was cut short after {result.seconds:g}s '
               f'({result.detail or result.outcome})')
        option = 'a stall timeout ([pcie_sched_probe] stall_timeout)'
    return (f'{cut}, so it is not known whether {result.ports} root ports '
            f'boot (q35 + OVMF with 232 ports takes 20-45 s under TCG on a '
            f'shared 2-core host, silent for most of it); accepted: '
            f'{option} of at least {CONCLUSIVE_SILENCE:g}s')


def accelerator_suspect(result: BootResult) -> bool:
    """A hang or timeout under KVM before the firmware printed anything.

    Then KVM, not the firmware, is the likely cause (:data:`KVM_SILENT`).
    """
    return (result.accel == 'kvm' and result.outcome in INCONCLUSIVE and
            not result.console_bytes)


def conclusive(once: ty.Callable[[], BootResult],
               retries: int = RETRIES) -> BootResult:
    """Boot until the outcome says something about the firmware.

    A hang or timeout (:data:`INCONCLUSIVE`) is tried again up to
    ``retries`` times; booted, firmware-shell and qemu-error are final.
    """
    result = once()
    for _ in range(retries):
        if result.outcome not in INCONCLUSIVE:
            break
        result = once()
    return result


def _plan_limit(arch: str, machine: str) -> int:
    return capacity.estimate(topology.machine_profile(
        arch, machine)).budgets[capacity.ROOT_BUS_SLOTS].max_ports


def _model_guided(predicted: int, limit: int,
                  boots: ty.Callable[[int], bool]) -> int:
    if predicted >= 1 and boots(predicted):
        if predicted >= limit or not boots(predicted + 1):
            return predicted
        return _bisect(predicted + 1, limit + 1, boots)
    return _bisect(0, max(predicted, 1), boots)


def _bisect(good: int, bad: int, boots: ty.Callable[[int], bool]) -> int:
    """Largest count in (good, bad) that boots.

    ``good`` boots (or is 0) and ``bad`` does not; booting is assumed to
    be monotonic in the count.
    """
    while bad - good > 1:
        middle = (good + bad) // 2
        if boots(middle):
            good = middle
        else:
            bad = middle
    return good
