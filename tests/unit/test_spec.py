"""The hw:pci_hotplug_ports grammar and the flavor/image rule."""

import testscenarios
import testtools

from pcie_sched import spec

load_tests = testscenarios.load_tests_apply_scenarios


class TestParseGood(testtools.TestCase):

    scenarios = [
        ('sixteen', {'value': '16', 'expected': 16}),
        ('zero', {'value': '0', 'expected': 0}),
        ('maximum', {'value': str(spec.MAX_PORTS),
                     'expected': spec.MAX_PORTS}),
        ('leading_zeros', {'value': '0016', 'expected': 16}),
        ('many_leading_zeros', {'value': '0' * 50 + '7', 'expected': 7}),
        ('int_value', {'value': 28, 'expected': 28}),
        ('int_zero', {'value': 0, 'expected': 0}),
    ]

    def test_parse(self):
        self.assertEqual(self.expected, spec.parse(self.value))


class TestParseBad(testtools.TestCase):

    scenarios = [
        ('negative', {'value': '-1',
                      'reason': 'less than the minimum of 0'}),
        ('huge_negative', {'value': '-' + '9' * 5000,
                           'reason': 'less than the minimum of 0'}),
        ('minus_sign_alone', {'value': '-', 'reason': 'not a whole number'}),
        ('negative_decimal', {'value': '-1.5',
                              'reason': 'not a whole number'}),
        ('above_max', {'value': str(spec.MAX_PORTS + 1),
                       'reason': 'greater than the maximum of 255'}),
        ('letters', {'value': 'abc', 'reason': 'not a whole number'}),
        ('decimal', {'value': '16.5', 'reason': 'not a whole number'}),
        ('exponent', {'value': '1e3', 'reason': 'not a whole number'}),
        ('empty', {'value': '', 'reason': 'the value is empty'}),
        ('huge', {'value': '9' * 5000,
                  'reason': 'greater than the maximum of 255'}),
        ('arabic_indic_digits', {'value': '\u0661\u0666',
                                 'reason': 'not a whole number'}),
        ('fullwidth_digits', {'value': '\uff11\uff16',
                              'reason': 'not a whole number'}),
        ('leading_space', {'value': ' 16', 'reason': 'not a whole number'}),
        ('trailing_newline', {'value': '16\n',
                              'reason': 'not a whole number'}),
        ('plus_sign', {'value': '+16', 'reason': 'not a whole number'}),
        ('hex', {'value': '0x10', 'reason': 'not a whole number'}),
        ('underscore', {'value': '1_6', 'reason': 'not a whole number'}),
        ('int_negative', {'value': -1,
                          'reason': 'less than the minimum of 0'}),
        ('int_above_max', {'value': 10 ** 100,
                           'reason': 'greater than the maximum of 255'}),
        ('bool', {'value': True, 'reason': 'got bool'}),
        ('none', {'value': None, 'reason': 'got NoneType'}),
        ('float', {'value': 16.0, 'reason': 'got float'}),
        ('bytes', {'value': b'16', 'reason': 'got bytes'}),
    ]

    def test_parse_refuses(self):
        error = self.assertRaises(spec.InvalidHotplugPortsSpec,
                                  spec.parse, self.value)
        message = str(error)
        self.assertIn(spec.FLAVOR_KEY, message)
        self.assertIn(self.reason, message)
        self.assertIn('accepted: an integer from 0 to 255', message)
        self.assertEqual(spec.FLAVOR_KEY, error.key)
        self.assertEqual(self.value, error.value)

    def test_message_names_the_value_but_stays_short(self):
        error = self.assertRaises(spec.InvalidHotplugPortsSpec,
                                  spec.parse, self.value, 'some:key')
        self.assertIn('some:key=', str(error))
        self.assertLess(len(str(error)), 250)
        if isinstance(self.value, str) and len(self.value) < 20:
            self.assertIn(repr(self.value), str(error))


class TestRequestedPorts(testtools.TestCase):

    scenarios = [
        ('nothing', {'flavor': {}, 'image': {}, 'expected': None}),
        ('none_mappings', {'flavor': None, 'image': None, 'expected': None}),
        ('flavor_only', {'flavor': {spec.FLAVOR_KEY: '16'}, 'image': {},
                         'expected': 16}),
        ('image_only', {'flavor': {'hw:cpu_policy': 'shared'},
                        'image': {spec.IMAGE_KEY: '8'}, 'expected': 8}),
        ('both_agree', {'flavor': {spec.FLAVOR_KEY: '8'},
                        'image': {spec.IMAGE_KEY: '8'}, 'expected': 8}),
        ('image_as_int', {'flavor': {}, 'image': {spec.IMAGE_KEY: 4},
                          'expected': 4}),
    ]

    def test_requested(self):
        self.assertEqual(self.expected,
                         spec.requested_ports(self.flavor, self.image))


class TestRequestedPortsErrors(testtools.TestCase):

    def test_conflict_names_both_keys_and_values(self):
        error = self.assertRaises(
            spec.InvalidHotplugPortsSpec, spec.requested_ports,
            {spec.FLAVOR_KEY: '16'}, {spec.IMAGE_KEY: '8'})
        message = str(error)
        self.assertIn(spec.FLAVOR_KEY, message)
        self.assertIn(spec.IMAGE_KEY, message)
        self.assertIn('16 / 8', message)
        self.assertIn('the same value on both', message)

    def test_invalid_image_value_names_image_key(self):
        error = self.assertRaises(
            spec.InvalidHotplugPortsSpec, spec.requested_ports,
            {}, {spec.IMAGE_KEY: 'lots'})
        self.assertEqual(spec.IMAGE_KEY, error.key)

    def test_system_metadata_key(self):
        self.assertEqual(12, spec.requested_ports(
            None, {spec.SYSTEM_METADATA_KEY: '12'},
            image_key=spec.SYSTEM_METADATA_KEY))

    def test_upper_bound_is_bus_numbers_minus_root_bus(self):
        self.assertEqual(spec.BUS_NUMBERS_PER_SEGMENT -
                         spec.ROOT_COMPLEX_BUS_NUMBERS, spec.MAX_PORTS)
        self.assertEqual(255, spec.MAX_PORTS)
