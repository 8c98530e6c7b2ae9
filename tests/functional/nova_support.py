"""What nova's own test framework needs to run outside nova's tree.

nova's ``ConfFixture`` points ``[wsgi] api_paste_config`` at
``etc/nova/api-paste.ini`` under nova's state path (site-packages), but
the nova wheel installs that file under ``<prefix>/etc/nova/``.
"""

import os
import sys

import nova


def api_paste_config() -> str:
    candidates = [
        os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
        os.path.join(os.path.dirname(os.path.dirname(nova.__file__)),
                     'etc', 'nova', 'api-paste.ini'),
    ]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise RuntimeError(
        'nova api-paste.ini not found in %s: install nova from PyPI '
        '("pip install nova>=34") into this environment' % candidates)


def use_installed_api_paste(test_case) -> None:
    """Point nova's config at the installed api-paste.ini."""
    test_case.flags(api_paste_config=api_paste_config(), group='wsgi')
