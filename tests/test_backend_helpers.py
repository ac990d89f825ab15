"""Engine-free parts of the vllm and openai backends: options, stop strings, cutting to fit."""

import pickle
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmr1_plugins import SamplingParams, get_backend_class
from rmr1_plugins.backends._common import (
    TRUNCATION_MARK,
    cut_middle,
    restore_answer_stop,
    split_cut,
    stop_strings,
)


def test_registered_lazily_without_importing_engines():
    code = (
        "import sys, rmr1_plugins\n"
        "vllm, openai = (rmr1_plugins.get_backend_class(n) for n in ('vllm', 'openai'))\n"
        "assert vllm.name == 'vllm' and openai.name == 'openai'\n"
        "print(sorted(m for m in ('vllm', 'aiohttp', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_options_are_validated_and_backends_pickle_without_engines():
    vllm, openai = get_backend_class("vllm"), get_backend_class("openai")
    with pytest.raises(ValueError, match="tensor_paralel_size"):
        vllm("m", {"tensor_paralel_size": 2})
    with pytest.raises(ValueError, match="must start with http"):
        openai("m", {"base_url": "localhost:8000"})
    with pytest.raises(ValueError, match="needs a model"):
        vllm(None)
    backend = openai("m", {"base_url": ["http://a/v1/", "http://b/v1"]})
    assert backend.urls == ["http://a/v1", "http://b/v1"]
    copy = pickle.loads(pickle.dumps(backend))
    assert copy.urls == backend.urls and copy.opts == backend.opts
    engine = pickle.loads(pickle.dumps(vllm("m", {"overflow": "truncate"})))
    assert engine.opts.overflow == "truncate" and engine._engine is None


def test_stop_strings_and_the_answer_tag_a_server_stripped():
    assert stop_strings(SamplingParams(stop=("x",)), True) == ["x", "</answer>"]
    assert stop_strings(SamplingParams(), False) == []
    assert restore_answer_stop("<answer>[[A]]", "stop", True) == "<answer>[[A]]</answer>"
    assert restore_answer_stop("<answer>[[A]]", "length", True) == "<answer>[[A]]"
    assert restore_answer_stop("<answer>[[A]]</answer>", "stop", True).count("</answer>") == 1
    assert restore_answer_stop("no answer", "stop", True) == "no answer"


@given(st.integers(0, 500), st.integers(0, 500), st.integers(0, 1000))
def test_split_cut_takes_from_the_longer_response_first(len_a, len_b, cut):
    cut_a, cut_b = split_cut(len_a, len_b, cut)
    assert cut_a + cut_b == cut and cut_a >= 0 and cut_b >= 0
    if cut <= abs(len_a - len_b):
        assert min(cut_a, cut_b) == 0
    else:
        assert abs((len_a - cut_a) - (len_b - cut_b)) <= 1


def test_cut_middle_keeps_both_ends():
    ids = list(range(10))
    decode = lambda part: ",".join(map(str, part))  # noqa: E731
    assert cut_middle(ids, 4, decode) == "0,1" + TRUNCATION_MARK + "8,9"
    assert cut_middle(ids, 1, decode) == "0" + TRUNCATION_MARK
    assert cut_middle(ids, 10, decode) == decode(ids)
