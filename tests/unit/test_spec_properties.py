"""Property-based checks of the spec grammar (hypothesis)."""

import re

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import testtools

from pcie_sched import spec

_ASCII_NUMBER = re.compile(r'[0-9]+')


def reference_parse(value):
    """The documented rule, written as plainly as possible."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    if isinstance(value, str):
        if not _ASCII_NUMBER.fullmatch(value):
            return None
        value = int(value)
    return value if spec.MIN_PORTS <= value <= spec.MAX_PORTS else None


#: What an extra spec, image property or metadata value can hold: text.
text_values = st.one_of(
    st.text(max_size=12),
    st.text(alphabet='0123456789', min_size=0, max_size=400),
    st.text(alphabet=' +-0123456789.eEx_\u0661\uff11\n', max_size=8),
    st.integers(min_value=-3, max_value=spec.MAX_PORTS + 3).map(str),
)
#: Anything at all, for callers that pass Python values.
values = st.one_of(
    text_values,
    st.integers(),
    st.binary(max_size=6),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
)


class TestParseProperties(testtools.TestCase):

    @settings(max_examples=3000, deadline=None)
    @given(values)
    def test_parse_agrees_with_reference(self, value):
        expected = reference_parse(value)
        if expected is None:
            error = self.assertRaises(spec.InvalidHotplugPortsSpec,
                                      spec.parse, value)
            self.assertIn(spec.FLAVOR_KEY, str(error))
            self.assertIn(spec.ACCEPTED, str(error))
            self.assertLess(len(str(error)), 300)
        else:
            self.assertEqual(expected, spec.parse(value))

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(st.none(), values), st.one_of(st.none(), values))
    def test_requested_ports_rule(self, flavor_value, image_value):
        flavor = {} if flavor_value is None else {
            spec.FLAVOR_KEY: flavor_value}
        image = {} if image_value is None else {spec.IMAGE_KEY: image_value}
        flavor_ports = reference_parse(flavor_value)
        image_ports = reference_parse(image_value)
        broken = ((flavor_value is not None and flavor_ports is None) or
                  (image_value is not None and image_ports is None) or
                  (flavor_ports is not None and image_ports is not None and
                   flavor_ports != image_ports))
        if broken:
            self.assertRaises(spec.InvalidHotplugPortsSpec,
                              spec.requested_ports, flavor, image)
        else:
            expected = flavor_ports if flavor_ports is not None else (
                image_ports)
            self.assertEqual(expected, spec.requested_ports(flavor, image))
