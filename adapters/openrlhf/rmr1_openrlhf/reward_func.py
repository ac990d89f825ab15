"""The file OpenRLHF loads: ``--reward.remote_url "$(python -m rmr1_openrlhf path)"``.

OpenRLHF imports it by path as a module named ``reward_func``; the judge itself lives in
:mod:`rmr1_openrlhf.reward`, so however often the file is loaded, a process has one judge.
Loading it in a rollout actor's event loop makes room there for rollouts that wait for their
group (:func:`rmr1_openrlhf.reward.hold_threads`).
"""

from rmr1_openrlhf.reward import hold_threads, reward_func

hold_threads()

__all__ = ["reward_func"]
