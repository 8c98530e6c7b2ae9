"""The extra spec validator, loaded by nova through its entry point."""

import importlib.metadata

from nova.api.validation.extra_specs import validators
from nova import exception
from nova.tests.functional.api import client as api_client
from nova.tests.functional import integrated_helpers
import testscenarios
import testtools

from pcie_sched.api import extra_specs
from pcie_sched import spec
from tests.functional import nova_support

load_tests = testscenarios.load_tests_apply_scenarios


class TestEntryPoint(testtools.TestCase):

    def test_registered_in_nova_namespace(self):
        points = importlib.metadata.entry_points(
            group='nova.api.extra_spec_validators')
        ours = [point for point in points if point.name == 'pcie_sched']
        self.assertEqual(1, len(ours),
                         'pcie-sched is not installed in this environment '
                         '(pip install -e .): its entry point is missing')
        self.assertIs(extra_specs, ours[0].load())

    def test_nova_loaded_our_validator(self):
        self.assertIsInstance(validators.VALIDATORS.get(spec.FLAVOR_KEY),
                              extra_specs.HotplugPortsValidator)


class TestThroughNovaValidate(testtools.TestCase):

    scenarios = [
        ('sixteen', {'value': '16', 'error': None}),
        ('zero', {'value': '0', 'error': None}),
        ('max', {'value': '255', 'error': None}),
        ('abc', {'value': 'abc', 'error': 'not a whole number'}),
        ('negative', {'value': '-1', 'error': 'less than the minimum of 0'}),
        ('above_max', {'value': '256', 'error': 'greater than the maximum'}),
        ('space', {'value': ' 16', 'error': 'not a whole number'}),
        ('unicode', {'value': '\u0661\u0666', 'error': 'not a whole number'}),
        ('empty', {'value': '', 'error': 'the value is empty'}),
    ]

    def test_validate(self):
        if self.error is None:
            self.assertIsNone(validators.validate(spec.FLAVOR_KEY, self.value))
            return
        error = self.assertRaises(exception.ValidationError,
                                  validators.validate, spec.FLAVOR_KEY,
                                  self.value)
        message = str(error)
        self.assertIn(spec.FLAVOR_KEY, message)
        self.assertIn(repr(self.value), message)
        self.assertIn(self.error, message)
        self.assertIn('an integer from 0 to 255', message)

    def test_neighbouring_key_still_unknown(self):
        error = self.assertRaises(exception.ValidationError,
                                  validators.validate,
                                  'hw:pci_hotplug_portz', '16')
        self.assertIn('does not appear to be a valid extra spec', str(error))


class TestFlavorExtraSpecsAPI(integrated_helpers._IntegratedTestBase):
    """PUT /flavors/{id}/os-extra_specs/{key} through nova's real API."""

    microversion = '2.86'

    def setUp(self):
        nova_support.use_installed_api_paste(self)
        super().setUp()
        self.flavor_id = self._create_flavor()

    def test_valid_value_is_stored(self):
        body = {spec.FLAVOR_KEY: '16'}
        self.admin_api.put_extra_spec(self.flavor_id, spec.FLAVOR_KEY, body)
        self.assertEqual(body, self.admin_api.get_extra_spec(
            self.flavor_id, spec.FLAVOR_KEY))

    def test_invalid_value_is_refused_with_reason(self):
        error = self.assertRaises(
            api_client.OpenStackApiException, self.admin_api.put_extra_spec,
            self.flavor_id, spec.FLAVOR_KEY, {spec.FLAVOR_KEY: 'abc'})
        self.assertEqual(400, error.response.status_code)
        body = error.response.text
        self.assertIn(spec.FLAVOR_KEY, body)
        self.assertIn('not a whole number', body)
        self.assertIn('an integer from 0 to 255', body)
        self.assertNotIn(spec.FLAVOR_KEY, self.admin_api.get_extra_specs(
            self.flavor_id))

    def test_create_with_post_validates_too(self):
        error = self.assertRaises(
            api_client.OpenStackApiException, self.admin_api.post_extra_spec,
            self.flavor_id, {'extra_specs': {spec.FLAVOR_KEY: '300'}})
        self.assertEqual(400, error.response.status_code)
        self.assertIn('greater than the maximum of 255', error.response.text)


class TestFlavorExtraSpecsOldMicroversion(TestFlavorExtraSpecsAPI):
    """Below 2.86 nova stores anything: the filter must re-validate."""

    microversion = '2.85'

    def test_invalid_value_is_refused_with_reason(self):
        self.admin_api.put_extra_spec(
            self.flavor_id, spec.FLAVOR_KEY, {spec.FLAVOR_KEY: 'abc'})
        self.assertEqual({spec.FLAVOR_KEY: 'abc'},
                         self.admin_api.get_extra_spec(self.flavor_id,
                                                       spec.FLAVOR_KEY))

    def test_create_with_post_validates_too(self):
        self.admin_api.post_extra_spec(
            self.flavor_id, {'extra_specs': {spec.FLAVOR_KEY: '300'}})
        self.assertEqual('300', self.admin_api.get_extra_specs(
            self.flavor_id)[spec.FLAVOR_KEY])
