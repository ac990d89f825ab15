"""The four packages are ready to publish (issue 23): each wheel builds, with complete metadata,
one version, and adapters that require the core release they ship with."""

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ADAPTERS = {"trl": "rmr1_trl", "verl": "rmr1_verl", "openrlhf": "rmr1_openrlhf"}
IGNORE = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """Each package built from a copy of its sources (setuptools writes build/ beside them)."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("packages")
    core = tmp / "core"
    core.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, core / name)
    shutil.copytree(ROOT / "rmr1_plugins", core / "rmr1_plugins", ignore=IGNORE)
    sources = {"rmr1-plugins": core}
    for name in ADAPTERS:
        sources[f"rmr1-plugins-{name}"] = tmp / name
        shutil.copytree(ROOT / "adapters" / name, tmp / name, ignore=IGNORE)
    out = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, "-w", str(out), *map(str, sources.values())], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    built = {}
    for wheel in out.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            info = next(n for n in names if n.endswith(".dist-info/METADATA"))
            metadata = Parser().parsestr(archive.read(info).decode())
            points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
            text = archive.read(points[0]).decode() if points else ""
            built[metadata["Name"]] = (metadata, names, text)
    assert sorted(built) == sorted(sources)
    return built


def test_metadata_is_complete_and_versions_are_aligned(wheels):
    from rmr1_plugins import __version__

    versions = {name: metadata["Version"] for name, (metadata, _, _) in wheels.items()}
    assert set(versions.values()) == {wheels["rmr1-plugins"][0]["Version"]}
    assert __version__ in ("0+unknown", versions["rmr1-plugins"])
    for metadata, _, _ in wheels.values():
        assert float(metadata["Metadata-Version"]) >= 2.4  # License-Expression
        assert metadata["License-Expression"] == "Apache-2.0"
        assert metadata["Requires-Python"] == ">=3.10"
        assert metadata["Summary"] and metadata["Description-Content-Type"] == "text/markdown"
        assert metadata.get_payload().startswith(f"# {metadata['Name']}")  # the README
        assert metadata.get_all("Classifier")


def test_every_wheel_ships_the_license_text(wheels):
    for name, (_, names, _) in wheels.items():
        licenses = [n for n in names if n.endswith("licenses/LICENSE")]
        assert licenses, f"{name}: no LICENSE in the wheel"


def test_adapters_require_the_core_they_ship_with(wheels):
    version = wheels["rmr1-plugins"][0]["Version"]
    major, minor, _ = version.split(".")
    for name in ADAPTERS:
        metadata = wheels[f"rmr1-plugins-{name}"][0]
        core = [r for r in metadata.get_all("Requires-Dist") if r.startswith("rmr1-plugins")]
        assert core == [f"rmr1-plugins<{major}.{int(minor) + 1},>={version}"]


def test_wheels_hold_their_code_data_and_entry_points(wheels):
    _, names, points = wheels["rmr1-plugins"]
    templates = {n for n in names if n.startswith("rmr1_plugins/templates/")}
    assert {f"rmr1_plugins/templates/{n}" for n in ("NOTICE", "INSTRUCT_SYSTEM_PROMPT.txt")} <= (
        templates
    )
    assert "rmr1_plugins/py.typed" in names and "rmr1 = rmr1_plugins.cli:main" in points
    assert "rmr1_plugins/eval/report.py" in names and "rmr1_plugins/recipe/run.py" in names
    assert "rmr1 = rmr1_verl.plugin" in wheels["rmr1-plugins-verl"][2]
    for name, package in ADAPTERS.items():
        files = wheels[f"rmr1-plugins-{name}"][1]
        assert f"{package}/__init__.py" in files
        assert not [f for f in files if f.split("/")[0] not in (package,) and ".dist-info" not in f]


def test_the_changelog_has_the_release(wheels):
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## {wheels['rmr1-plugins'][0]['Version']} " in changelog
