"""The file OpenRLHF loads: ``--reward.remote_url "$(python -m rmr1_openrlhf path)"``.

OpenRLHF imports it by path as a module named ``reward_func``; the judge itself lives in
:mod:`rmr1_openrlhf.reward`, so however often the file is loaded, a process has one judge.
"""

from rmr1_openrlhf.reward import reward_func

__all__ = ["reward_func"]
