"""Imported in every Ray process through ``VERL_USE_EXTERNAL_MODULES``: registers the scripted
judges of tests/serving.py (``ranker``: the larger number wins) with rmr1's plugins, so a reward
worker's in-process scorer can use one, as an installed plugin's judge would be."""

from serving import register

register()
