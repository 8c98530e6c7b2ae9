"""Sphinx configuration for pcie-sched."""

extensions = [
    'oslo_config.sphinxext',
]
project = 'pcie-sched'
copyright = '2026, pcie-sched developers'
master_doc = 'index'
exclude_patterns = []
html_theme = 'alabaster'
html_static_path = ['_static']
pygments_style = 'sphinx'
