"""Imported by a worker process that a test starts (veRL's ``VERL_USE_EXTERNAL_MODULES`` names
it): registers the judges of :mod:`rmr1_plugins.testing.judges` for the process's life, so a
worker's in-process scorer can use one by name, as an installed plugin's judge. Never imported
by the test process itself."""

from rmr1_plugins.testing.judges import register_in_worker

register_in_worker()
