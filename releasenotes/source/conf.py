"""Sphinx configuration for pcie-sched release notes."""

extensions = ['reno.sphinxext']
project = 'pcie-sched Release Notes'
master_doc = 'index'
html_theme = 'alabaster'
