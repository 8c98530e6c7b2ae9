"""Publishing capacity traits to a real Placement server."""

import json
import os
import socket
import subprocess
import sys

import fixtures
import testtools

from pcie_sched import placement
from pcie_sched import probe
from tests.functional import placement_server

FOREIGN = ['HW_CPU_X86_AVX2', 'CUSTOM_OTHER_TEAM']


def run_publish(url, workdir, *extra):
    """``pcie-sched publish`` for provider compute1 at ``url``, as JSON."""
    config = os.path.join(workdir, 'clouds.yaml')
    with open(config, 'w') as handle:
        json.dump({'clouds': {'test': {
            'auth_type': 'admin_token',
            'auth': {'endpoint': url, 'token': 'admin'}}}}, handle)
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=config)
    return subprocess.run(
        [sys.executable, '-m', 'pcie_sched.cmd.main', 'publish',
         '--cloud', 'test', '--host', 'compute1', '--format', 'json',
         *extra], env=env, capture_output=True, text=True, timeout=120,
        cwd=workdir)


def store_measured(cache_dir, arch, machine, firmware, max_ports):
    """A find-max result cached under this host's key, as the probe does."""
    key = probe.fingerprint(arch, machine, firmware)
    probe._store(cache_dir, probe.FindMaxResult(
        max_ports=max_ports, boots=1, seconds=1.0, model_max_ports=232,
        limited_by='root-bus-slots', strategy='model', fingerprint=key,
        steps=((max_ports, 'booted', 1.0),)))


def store_stale(cache_dir, arch, machine, firmware, max_ports,
                qemu='QEMU emulator version 7.1.0 (Debian 1:7.1+dfsg-2)'):
    """What find-max cached before QEMU was upgraded to this host's.

    The same arch, machine and firmware, another QEMU version line: the
    entry the driver no longer finds after the upgrade.
    """
    inputs = probe.fingerprint_inputs(arch, machine, firmware)
    inputs['qemu'] = qemu
    probe._store(cache_dir, probe.FindMaxResult(
        max_ports=max_ports, boots=1, seconds=1.0, model_max_ports=232,
        limited_by='root-bus-slots', strategy='model',
        fingerprint=probe._digest(inputs),
        steps=((max_ports, 'booted', 1.0),), arch=arch, machine=machine,
        firmware=firmware, inputs=tuple(inputs.items()),
        measured_at='2026-01-02T03:04:05+00:00'))


class PlacementTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(placement_server.PlacementServer())
        self.adapter = self.server.connect().placement
        response = self.adapter.post('/resource_providers',
                                     json={'name': 'compute1'},
                                     microversion='1.20')
        self.provider = response.json()['uuid']
        self.set_traits(FOREIGN)

    def traits(self):
        response = self.adapter.get(
            f'/resource_providers/{self.provider}/traits', microversion='1.6')
        return response.json()

    def set_traits(self, traits):
        placement.ensure_traits(self.adapter,
                                [t for t in traits if t.startswith('CUST')])
        body = self.traits()
        self.adapter.put(
            f'/resource_providers/{self.provider}/traits',
            json={'traits': sorted(traits),
                  'resource_provider_generation':
                      body['resource_provider_generation']},
            microversion='1.6')


class TestPublish(PlacementTestCase):

    def test_publish_then_capacity_change(self):
        summary = placement.publish(self.adapter, self.provider, 64)
        self.assertTrue(summary['changed'])
        self.assertEqual(sorted(set(FOREIGN) |
                                placement.traits_for_capacity(64)),
                         sorted(self.traits()['traits']))
        self.assertIn('CUSTOM_PCIE_HOTPLUG_PORTS_GE_64', self.traits()[
            'traits'])
        self.assertIn('CUSTOM_PCIE_HOTPLUG_PORTS_MAX_64', self.traits()[
            'traits'])

        summary = placement.publish(self.adapter, self.provider, 20)
        current = set(self.traits()['traits'])
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(20),
                         current)
        self.assertIn('CUSTOM_PCIE_HOTPLUG_PORTS_GE_64', summary['removed'])
        self.assertNotIn('CUSTOM_PCIE_HOTPLUG_PORTS_GE_24', current)

    def test_republish_is_idempotent(self):
        placement.publish(self.adapter, self.provider, 32)
        generation = self.traits()['resource_provider_generation']
        summary = placement.publish(self.adapter, self.provider, 32)
        self.assertFalse(summary['changed'])
        self.assertEqual(generation,
                         self.traits()['resource_provider_generation'])

    def test_conflict_is_retried_without_losing_the_other_write(self):
        raced = []

        def another_writer():
            if not raced:
                raced.append(True)
                self.set_traits(FOREIGN + ['CUSTOM_ADDED_DURING_PUBLISH'])

        summary = placement.publish(self.adapter, self.provider, 16,
                                    before_write=another_writer)
        self.assertEqual(2, summary['attempts'])
        self.assertEqual(
            set(FOREIGN) | {'CUSTOM_ADDED_DURING_PUBLISH'} |
            placement.traits_for_capacity(16), set(self.traits()['traits']))

    def test_gives_up_after_bounded_retries(self):
        def always_race():
            self.set_traits(list(self.traits()['traits']) +
                            [f'CUSTOM_RACE_{len(self.traits()["traits"])}'])

        error = self.assertRaises(
            placement.PublishError, placement.publish, self.adapter,
            self.provider, 8, retries=3, before_write=always_race)
        self.assertIn('gave up after 3 attempts', str(error))
        self.assertTrue(set(FOREIGN) <= set(self.traits()['traits']))

    def test_concurrent_publishers(self):
        script = (
            'import sys, openstack\n'
            'from pcie_sched import placement\n'
            'adapter = openstack.connect(auth_type="admin_token", auth={'
            '"endpoint": sys.argv[1], "token": "admin"}).placement\n'
            'for _ in range(5):\n'
            '    placement.publish(adapter, sys.argv[2], int(sys.argv[3]),'
            ' retries=50)\n')
        workers = [subprocess.Popen(
            [sys.executable, '-c', script, self.server.url, self.provider,
             str(ports)], stderr=subprocess.PIPE) for ports in (24, 96)]
        for worker in workers:
            _, err = worker.communicate(timeout=120)
            self.assertEqual(0, worker.returncode, err)
        final = set(self.traits()['traits'])
        self.assertTrue(set(FOREIGN) <= final)
        ours = {t for t in final if placement.owned(t)}
        self.assertIn(ours, (placement.traits_for_capacity(24),
                             placement.traits_for_capacity(96)))

    def test_find_provider(self):
        self.assertEqual(self.provider,
                         placement.find_provider(self.adapter, 'compute1'))
        error = self.assertRaises(placement.PublishError,
                                  placement.find_provider, self.adapter,
                                  'nosuchhost')
        self.assertIn("host='nosuchhost'", str(error))
        self.assertIn('found 0', str(error))


class TestPublishCommand(PlacementTestCase):

    def publish(self, *extra, warnings=None):
        workdir = self.useFixture(fixtures.TempDir()).path
        result = run_publish(self.server.url, workdir, *extra)
        self.assertEqual(0, result.returncode, result.stderr)
        if warnings is not None:
            warnings.append(result.stderr)
        return json.loads(result.stdout)

    def test_cli_with_clouds_yaml(self):
        summary = self.publish('--max-ports', '48')
        self.assertTrue(summary['changed'])
        self.assertEqual('option', summary['capacity_source'])
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(48),
                         set(self.traits()['traits']))

    def test_publishes_the_compute_drivers_override(self):
        # The driver rewrites these traits on every resource update from
        # [pcie_sched_compute] max_ports_override; publish must agree.
        nova_conf = os.path.join(
            self.useFixture(__import__('fixtures').TempDir()).path,
            'nova-cpu.conf')
        with open(nova_conf, 'w') as handle:
            handle.write('[pcie_sched_compute]\nmax_ports_override = 40\n')
        summary = self.publish('--config-file', nova_conf)
        self.assertEqual('override', summary['capacity_source'])
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(40),
                         set(self.traits()['traits']))

    def compute_conf(self, text):
        """nova-compute's config with a cache of measured results."""
        workdir = self.useFixture(fixtures.TempDir()).path
        cache_dir = os.path.join(workdir, 'cache')
        nova_conf = os.path.join(workdir, 'nova-cpu.conf')
        with open(nova_conf, 'w') as handle:
            handle.write(f'[pcie_sched_probe]\ncache_dir = {cache_dir}\n'
                         f'{text}')
        return nova_conf, cache_dir

    def test_machine_and_firmware_are_the_compute_drivers(self):
        # The driver looks its capacity up for [libvirt] hw_machine_type
        # (this arch's entry) and [pcie_sched_compute] firmware; publish
        # must find the same cached result, not the one for q35/uefi.
        nova_conf, cache_dir = self.compute_conf(
            '[libvirt]\nhw_machine_type = x86_64=pc-q35-7.2,aarch64=virt\n'
            '[pcie_sched_compute]\nfirmware = bios\n')
        store_measured(cache_dir, 'x86_64', 'pc-q35-7.2', 'bios', 77)
        store_measured(cache_dir, 'x86_64', 'q35', 'uefi', 50)
        warnings = []
        summary = self.publish('--arch', 'x86_64', '--config-file',
                               nova_conf, warnings=warnings)
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(77),
                         set(self.traits()['traits']))
        self.assertEqual('measured', summary['capacity_source'])
        self.assertEqual(
            {'arch': 'x86_64', 'machine': 'pc-q35-7.2',
             'machine_source': 'config', 'firmware': 'bios',
             'firmware_source': 'config'},
            {key: summary[key] for key in ('arch', 'machine',
                                           'machine_source', 'firmware',
                                           'firmware_source')})
        self.assertEqual([''], warnings)

    def test_explicit_machine_and_firmware_win(self):
        nova_conf, cache_dir = self.compute_conf(
            '[libvirt]\nhw_machine_type = x86_64=pc-q35-7.2\n'
            '[pcie_sched_compute]\nfirmware = bios\n')
        store_measured(cache_dir, 'x86_64', 'pc-q35-7.2', 'bios', 77)
        store_measured(cache_dir, 'x86_64', 'pc-q35-7.2', 'uefi', 66)
        store_measured(cache_dir, 'x86_64', 'q35', 'bios', 55)

        summary = self.publish('--arch', 'x86_64', '--config-file',
                               nova_conf, '--firmware', 'uefi')
        self.assertEqual(('measured', 'pc-q35-7.2', 'config', 'uefi',
                          'option'),
                         (summary['capacity_source'], summary['machine'],
                          summary['machine_source'], summary['firmware'],
                          summary['firmware_source']))
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(66),
                         set(self.traits()['traits']))

        summary = self.publish('--arch', 'x86_64', '--config-file',
                               nova_conf, '--machine', 'q35')
        self.assertEqual(('measured', 'q35', 'option', 'bios', 'config'),
                         (summary['capacity_source'], summary['machine'],
                          summary['machine_source'], summary['firmware'],
                          summary['firmware_source']))
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(55),
                         set(self.traits()['traits']))

    def test_stale_measurement_is_said(self):
        # QEMU was upgraded since find-max ran: the driver and publish
        # fall back to the model, and publish says why and what to run.
        nova_conf, cache_dir = self.compute_conf(
            '[libvirt]\nhw_machine_type = x86_64=q35\n'
            '[pcie_sched_compute]\nfirmware = bios\n')
        store_stale(cache_dir, 'x86_64', 'q35', 'bios', 77)
        warnings = []
        summary = self.publish('--arch', 'x86_64', '--config-file',
                               nova_conf, warnings=warnings)
        model = probe.model_capacity('x86_64', 'q35', 'bios').max_ports
        self.assertEqual('model', summary['capacity_source'])
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(model),
                         set(self.traits()['traits']))
        stale, = summary['stale_measurements']
        self.assertEqual(77, stale['max_ports'])
        self.assertIn('QEMU emulator version 7.1.0', stale['changed'])
        warning, = [line for line in warnings[0].splitlines()
                    if 'is stale' in line]
        self.assertIn('pcie-sched: warning: Measured PCIe root port '
                      'capacity for x86_64 q35 bios is stale', warning)
        self.assertIn(f'pcie-sched probe --find-max --arch x86_64 --machine '
                      f'q35 --firmware bios --config-file {nova_conf}',
                      warning)
        # Measured again: nothing stale is said any more.
        store_measured(cache_dir, 'x86_64', 'q35', 'bios', 70)
        summary = self.publish('--arch', 'x86_64', '--config-file',
                               nova_conf, warnings=warnings)
        self.assertEqual(('measured', []), (summary['capacity_source'],
                                            summary['stale_measurements']))
        self.assertNotIn('is stale', warnings[1])

    def test_defaults_without_nova_settings(self):
        # No config file: q35 and uefi, as before.
        warnings = []
        summary = self.publish('--arch', 'x86_64', '--max-ports', '8',
                               warnings=warnings)
        self.assertEqual(('q35', 'default', 'uefi', 'default'),
                         (summary['machine'], summary['machine_source'],
                          summary['firmware'], summary['firmware_source']))
        self.assertEqual([''], warnings)

        # A config file without either option: the same defaults, and a
        # warning, since nova-compute would then use nova's own 'pc'.
        nova_conf, cache_dir = self.compute_conf(
            '[libvirt]\nhw_machine_type = aarch64=virt,x86_64\n')
        store_measured(cache_dir, 'x86_64', 'q35', 'uefi', 50)
        summary = self.publish('--arch', 'x86_64', '--config-file',
                               nova_conf, warnings=warnings)
        self.assertEqual(('measured', 'q35', 'default', 'uefi', 'default'),
                         (summary['capacity_source'], summary['machine'],
                          summary['machine_source'], summary['firmware'],
                          summary['firmware_source']))
        self.assertEqual(set(FOREIGN) | placement.traits_for_capacity(50),
                         set(self.traits()['traits']))
        self.assertIn('no x86_64 entry in [libvirt] hw_machine_type',
                      warnings[1])
        self.assertIn("nova's default machine type (pc)", warnings[1])

    def test_aarch64_entry_is_used_for_aarch64(self):
        # The arch picks the entry; --max-ports keeps the model out.
        nova_conf, _ = self.compute_conf(
            '[libvirt]\nhw_machine_type = x86_64=q35,aarch64=virt-7.2\n')
        summary = self.publish('--arch', 'aarch64', '--max-ports', '8',
                               '--config-file', nova_conf)
        self.assertEqual(('virt-7.2', 'config', 'uefi', 'default'),
                         (summary['machine'], summary['machine_source'],
                          summary['firmware'], summary['firmware_source']))


class TestUnreachable(testtools.TestCase):

    def test_clear_error(self):
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        # Nothing listens on the port once the socket is closed.
        error = self.assertRaises(
            placement.PublishError, placement.connect, auth_type='admin_token',
            auth={'endpoint': f'http://127.0.0.1:{port}', 'token': 'admin'})
        self.assertIn(f'cannot reach Placement at http://127.0.0.1:{port}',
                      str(error))


class TestSlowAndRefusing(PlacementTestCase):

    def test_non_admin_token_is_a_clear_auth_error(self):
        adapter = placement.connect(
            auth_type='admin_token',
            auth={'endpoint': self.server.url, 'token': 'someuser'})
        error = self.assertRaises(placement.PublishError, placement.publish,
                                  adapter, self.provider, 8)
        self.assertIn('HTTP 403', str(error))
        self.assertIn('admin role', str(error))
        self.assertEqual(set(FOREIGN), set(self.traits()['traits']))

    def test_silent_server_times_out(self):
        import threading
        listener = socket.socket()
        listener.bind(('127.0.0.1', 0))
        listener.listen(8)
        self.addCleanup(listener.close)
        accepted = []

        def accept_and_say_nothing():
            for _ in range(8):
                try:
                    accepted.append(listener.accept()[0])
                except OSError:
                    return
        threading.Thread(target=accept_and_say_nothing, daemon=True).start()
        self.addCleanup(lambda: [conn.close() for conn in accepted])
        self.useFixture(__import__('fixtures').MonkeyPatch(
            'pcie_sched.placement.DEFAULT_TIMEOUT', 2.0))
        port = listener.getsockname()[1]
        # Skip version discovery (it would time out first): talk to the
        # real server's adapter but aim each request at the silent one.
        adapter = self.server.connect().placement
        adapter.endpoint_override = f'http://127.0.0.1:{port}'
        error = self.assertRaises(placement.PublishError, placement.publish,
                                  adapter, self.provider, 8)
        self.assertIn('timed out', str(error))


class TestTraitScheme(testtools.TestCase):

    def test_names_are_valid_custom_traits(self):
        import re
        for ports in (0, 1, 15, 16, 232, 255):
            for trait in placement.traits_for_capacity(ports):
                self.assertTrue(re.fullmatch(r'CUSTOM_[A-Z0-9_]+', trait))
                self.assertLessEqual(len(trait), 255)
                self.assertTrue(placement.owned(trait))
        self.assertEqual({'CUSTOM_PCIE_HOTPLUG_PORTS_MAX_0'},
                         placement.traits_for_capacity(0))
        self.assertIn('CUSTOM_PCIE_HOTPLUG_PORTS_GE_224',
                      placement.traits_for_capacity(232))
        self.assertNotIn('CUSTOM_PCIE_HOTPLUG_PORTS_GE_255',
                         placement.traits_for_capacity(232))
        self.assertRaises(ValueError, placement.traits_for_capacity, -1)
