"""Rewards served out of the trainer's process: ``rmr1 serve`` and the veRL cohort actor.

- :mod:`.app`: the ``rmr1 serve`` command and its aiohttp application (``/get_reward``,
  ``/cohort``, ``/health``, ``/stats``);
- :mod:`.http`: the HTTP edge (body limits, deadlines, token, access log, binding);
- :mod:`.cohort`: the ``/cohort`` protocol and OpenRLHF groups, over the cohort service;
- :mod:`.ray_actor`: the same cohort service as a named Ray actor in the trainer's cluster;
- :mod:`.cohort_client`: a trainer's side of both: ``/cohort`` over HTTP, or the actor.

A face over :mod:`rmr1_plugins.rewards`; aiohttp and Ray are imported only where they are used.
"""
