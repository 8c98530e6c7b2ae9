"""The probe's boot disk: the smallest thing that proves the firmware got it.

The probe puts the disk behind the last root port, so the firmware must
enumerate every port, give the last one a bus number and windows, and
find the disk before the payload prints :data:`MARKER` on the first
serial port.

* x86_64 UEFI: a standalone GRUB EFI image (``grub-mkstandalone`` from
  Debian's ``grub-efi-amd64-bin``) as ``EFI/BOOT/BOOTX64.EFI`` on a FAT
  ESP; it prints the marker and powers the guest off.
* x86_64 BIOS: a 512-byte boot sector, assembled here, that writes the
  marker to COM1 and halts.
* aarch64 UEFI: Debian builds no arm64 GRUB for amd64 hosts, but its
  AAVMF has the UEFI shell built in, and the shell runs ``startup.nsh``
  from the first file system it maps. A FAT ESP with that script proves
  the same thing: the file system behind the last port was found.

Images are built once per content and cached; building needs no root.
"""

import hashlib
import os
import shutil
import subprocess  # nosec B404  # argument lists only, no shell
import tempfile
import typing as ty

from pcie_sched import interrupts

MARKER = 'PCIE-SCHED-PAYLOAD-REACHED'

_GRUB_CFG = f'echo {MARKER}\nhalt\n'
# For guests that must stay up after the marker (hotplug tests).
_GRUB_CFG_WAIT = f'echo {MARKER}\nsleep 36000\n'
# The shell echoes each command before running it, so the marker is
# assembled from a variable: only the command's output matches MARKER.
_STARTUP_NSH = ('set -v PCIESCHED REACHED\r\n'
                f'echo {MARKER.rsplit("-", 1)[0]}-%PCIESCHED%\r\n'
                'reset -s\r\n')
_ESP_KIB = 4096
_TOOL_TIMEOUT = 120


class PayloadError(RuntimeError):
    """A tool needed to build the boot disk is missing or failed."""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PayloadError(f'{name} not found: install the Debian package '
                           f'{package} (see bindep.txt)')
    return path


def _run(args: ty.Sequence[str]) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True,  # nosec B603
                       timeout=_TOOL_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise PayloadError(f'{args[0]} failed: '
                           f'{exc.stderr.decode(errors="replace")[-500:]}')
    except subprocess.TimeoutExpired:
        raise PayloadError(f'{args[0]} did not finish in {_TOOL_TIMEOUT}s')


def boot_sector() -> bytes:
    """A BIOS boot sector that prints MARKER on COM1 (0x3f8) and halts."""
    message = f'\r\n{MARKER}\r\n'.encode() + b'\x00'
    code = bytearray()
    code += b'\x31\xc0'                 # xor ax, ax
    code += b'\x8e\xd8'                 # mov ds, ax
    code += b'\xbe\x00\x00'             # mov si, message (patched below)
    code += b'\xba\xf8\x03'             # mov dx, 0x3f8
    loop = len(code)
    code += b'\xac'                     # lodsb
    code += b'\x84\xc0'                 # test al, al
    code += b'\x74\x03'                 # jz done
    code += b'\xee'                     # out dx, al
    code += b'\xeb' + bytes([(loop - (len(code) + 2)) & 0xff])  # jmp loop
    code += b'\xfa\xf4\xeb\xfd'         # done: cli; hlt; jmp $-1
    # BIOS loads the sector at 0000:7c00.
    code[5:7] = (0x7c00 + len(code)).to_bytes(2, 'little')
    sector = bytes(code) + message
    return sector.ljust(510, b'\x00') + b'\x55\xaa'


def _fat_image(path: str, files: ty.Mapping[str, str]) -> None:
    """A FAT ESP holding ``files`` (image path -> local file)."""
    mkfs = _tool('mkfs.vfat', 'dosfstools')
    mmd = _tool('mmd', 'mtools')
    mcopy = _tool('mcopy', 'mtools')
    _run([mkfs, '-C', path, str(_ESP_KIB)])
    made = set()
    for target in sorted(files):
        parts = target.strip('/').split('/')[:-1]
        for depth in range(1, len(parts) + 1):
            folder = '::/' + '/'.join(parts[:depth])
            if folder not in made:
                _run([mmd, '-i', path, folder])
                made.add(folder)
        _run([mcopy, '-i', path, files[target], '::/' + target.strip('/')])


def _build(kind: str, path: str, workdir: str, grub_cfg: str) -> None:
    if kind == 'x86_64-bios':
        with open(path, 'wb') as image:
            image.write(boot_sector().ljust(1024 * 1024, b'\x00'))
        return
    if kind == 'x86_64-uefi':
        grub = _tool('grub-mkstandalone', 'grub-common')
        if not os.path.isdir('/usr/lib/grub/x86_64-efi'):
            raise PayloadError('/usr/lib/grub/x86_64-efi not found: install '
                               'the Debian package grub-efi-amd64-bin')
        cfg = os.path.join(workdir, 'grub.cfg')
        with open(cfg, 'w') as handle:
            handle.write(grub_cfg)
        efi = os.path.join(workdir, 'BOOTX64.EFI')
        _run([grub, '-O', 'x86_64-efi', '-o', efi,
              '--install-modules=echo halt sleep normal configfile',
              '--modules=echo halt sleep', '--fonts=', '--locales=',
              '--themes=',
              f'boot/grub/grub.cfg={cfg}'])
        _fat_image(path, {'EFI/BOOT/BOOTX64.EFI': efi})
        return
    if kind == 'aarch64-uefi':
        script = os.path.join(workdir, 'startup.nsh')
        with open(script, 'w', newline='') as handle:
            handle.write(_STARTUP_NSH)
        _fat_image(path, {'startup.nsh': script})
        return
    raise PayloadError(f'no boot payload for {kind!r}; accepted: '
                       f'x86_64-uefi, x86_64-bios, aarch64-uefi')


#: Modes of what the probe caches. Root often probes and nova-compute
#: (another user) reads the results; nothing cached is secret, and only
#: the owner may change it.
SHARED_DIR_MODE = 0o755
SHARED_FILE_MODE = 0o644


def make_shared_dir(path: str) -> None:
    """Create ``path`` readable by every user, whatever the umask.

    Every directory created on the way gets :data:`SHARED_DIR_MODE`, not
    just the last: nova-compute must be able to walk the whole path.
    Directories that already exist keep their mode: they are the
    operator's (see :func:`unreadable_by_others`).
    """
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        if os.path.lexists(current):
            raise NotADirectoryError(f'{current!r} is not a directory')
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:  # a concurrent probe made it first
            if not os.path.isdir(directory):
                raise
            continue
        # mkdir's mode is filtered through the umask (root's is often 077).
        os.chmod(directory, SHARED_DIR_MODE)


def unreadable_by_others(path: str) -> ty.Optional[str]:
    """The first directory on ``path`` other users cannot enter, if any."""
    current = os.path.abspath(path)
    while True:
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def disk_image(arch: str, firmware: str, cache_dir: str,
               stay_up: bool = False) -> str:
    """Path of the cached boot disk for ``arch``/``firmware``, built once.

    ``stay_up`` keeps a UEFI x86_64 guest running after the marker
    instead of powering it off.

    The cache name hashes the payload's recipe, so a change here builds a
    new image; the image is written under a temporary name and renamed,
    so concurrent probes never see half a file.
    """
    kind = f'{arch}-{firmware}'
    grub_cfg = _GRUB_CFG_WAIT if stay_up else _GRUB_CFG
    recipe = hashlib.sha256(
        f'{kind}\0{grub_cfg}\0{_STARTUP_NSH}\0{_ESP_KIB}\0'.encode() +
        boot_sector()).hexdigest()[:16]
    make_shared_dir(cache_dir)
    path = os.path.join(cache_dir, f'payload-{kind}-{recipe}.img')
    if os.path.exists(path):
        return path
    workdir = tempfile.mkdtemp(prefix='pcie-sched-payload-', dir=cache_dir)
    try:
        staged = os.path.join(workdir, 'disk.img')
        _build(kind, staged, workdir, grub_cfg)
        os.chmod(staged, SHARED_FILE_MODE)
        os.replace(staged, path)
    finally:
        with interrupts.held():
            shutil.rmtree(workdir, ignore_errors=True)
    return path
