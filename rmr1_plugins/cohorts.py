"""Moved to :mod:`rmr1_plugins.rewards.cohorts`; this path goes in the next release."""

from rmr1_plugins._moved import moved

__getattr__ = moved(__name__, "rmr1_plugins.rewards.cohorts")
