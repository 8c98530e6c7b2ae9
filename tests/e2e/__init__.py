# nova's functional test package decides at import whether nova runs on
# eventlet or native threads (nova.monkey_patch.patch, read from
# OS_NOVA_DISABLE_EVENTLET_PATCHING) and refuses threads once anything has
# imported eventlet, which nova's test fixtures do through futurist. So it
# is imported here, before any module of this tier.
from nova.tests import functional  # noqa: F401
