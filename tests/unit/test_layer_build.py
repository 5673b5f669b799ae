"""The layer build's checks on fake trees: the 250 MB limit, forbidden packages, exclusions.
No pip, no network."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_layer", REPO_ROOT / "layers/build_layer.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_layer"] = module
    spec.loader.exec_module(module)
    return module


build_layer = _load()


def _file(path: Path, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def _dist(site: Path, name: str, version: str, files: dict[str, int]) -> None:
    """A fake installed distribution: its files and a dist-info with their RECORD."""
    dist_info = site / f"{name}-{version}.dist-info"
    for relative, size in files.items():
        _file(site / relative, size)
    records = [*files, f"{dist_info.name}/METADATA", f"{dist_info.name}/RECORD"]
    _file(dist_info / "METADATA")
    (dist_info / "RECORD").write_text("".join(f"{r},sha256=x,1\n" for r in records))


# --- size ---------------------------------------------------------------------------------------
def test_tree_size_counts_every_file(tmp_path: Path) -> None:
    _file(tmp_path / "a.py", 100)
    _file(tmp_path / "pkg" / "b.so", 2 * MB)
    assert build_layer.tree_size(tmp_path) == 2 * MB + 100


def test_size_within_the_limit_passes() -> None:
    assert build_layer.check_size(200 * MB, 1 * MB) == 201 * MB


def test_size_over_the_limit_fails() -> None:
    with pytest.raises(build_layer.LayerError, match=r"over Lambda's unzipped limit of 250\.0 MB"):
        build_layer.check_size(249 * MB, 2 * MB)


def test_lambda_limit_is_250_mb() -> None:
    assert build_layer.LAMBDA_UNZIPPED_LIMIT_BYTES == 250 * MB


def test_verify_counts_the_function_code_too(tmp_path: Path) -> None:
    site, repo = tmp_path / "site", tmp_path / "repo"
    _file(site / "numpy" / "core.so", 6 * MB)
    _file(repo / "functions" / "query" / "handler.py", 3 * MB)
    _file(repo / "shared" / "settings.py", 1 * MB)
    assert build_layer.verify(site, repo, limit=10 * MB) == 10 * MB
    _file(repo / "shared" / "more.py", 1)
    with pytest.raises(build_layer.LayerError, match=r"function code 4\.0 MB"):
        build_layer.verify(site, repo, limit=10 * MB)


# --- forbidden packages -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "entry",
    [
        "torch/__init__.py",
        "torch-2.13.0.dist-info/METADATA",
        "sentence_transformers/__init__.py",
        "sentence_transformers-3.0.1.dist-info/METADATA",
        "milvus_lite/__init__.py",
    ],
)
def test_forbidden_packages_are_found(tmp_path: Path, entry: str) -> None:
    _file(tmp_path / "numpy" / "__init__.py")
    _file(tmp_path / entry)
    assert build_layer.forbidden_packages(tmp_path) == [entry.split("/")[0]]
    with pytest.raises(build_layer.LayerError, match="forbidden packages"):
        build_layer.verify(tmp_path, tmp_path / "repo")


def test_similar_names_are_not_forbidden(tmp_path: Path) -> None:
    for entry in ("torchvision_helpers/x.py", "sentence/x.py", "pymilvus/x.py", "tokenizers/x.py"):
        _file(tmp_path / entry)
    assert build_layer.forbidden_packages(tmp_path) == []


# --- exclusions and pruning ---------------------------------------------------------------------
def test_remove_distribution_deletes_its_files_only(tmp_path: Path) -> None:
    _dist(tmp_path, "pyarrow", "26.0.1", {"pyarrow/__init__.py": 10, "pyarrow/lib.so": 10})
    _dist(tmp_path, "faiss_cpu", "1.15.1", {"faiss/__init__.py": 10, "faiss_cpu.libs/x.so": 10})
    _dist(tmp_path, "pandas", "3.1.1", {"pandas/__init__.py": 10})
    assert build_layer.remove_distribution(tmp_path, "pyarrow")
    assert build_layer.remove_distribution(tmp_path, "faiss-cpu")
    assert not build_layer.remove_distribution(tmp_path, "not-installed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pandas", "pandas-3.1.1.dist-info"]


def test_prune_drops_bytecode_and_test_suites(tmp_path: Path) -> None:
    _file(tmp_path / "pandas" / "tests" / "test_frame.py")
    _file(tmp_path / "pandas" / "__pycache__" / "x.cpython-312.pyc")
    _file(tmp_path / "pandas" / "core.pyc")
    keep = _file(tmp_path / "pandas" / "testing.py")
    build_layer.prune(tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [keep]


def test_everything_excluded_has_a_reason() -> None:
    assert all(len(reason) > 10 for reason in build_layer.EXCLUDED.values())
    assert {"milvus-lite", "faiss-cpu", "pyarrow"} <= set(build_layer.EXCLUDED)


# --- what gets installed ------------------------------------------------------------------------
def test_only_core_dependencies_are_installed() -> None:
    requirements = build_layer.core_requirements(REPO_ROOT / "pyproject.toml")
    names = " ".join(requirements).lower()
    assert "pymilvus" in names
    assert "fastapi" in names
    for extra_only in ("torch", "sentence-transformers", "milvus-lite", "pytest"):
        assert extra_only not in names


def test_pip_installs_manylinux_wheels_for_the_lambda_python(tmp_path: Path) -> None:
    command = build_layer.pip_command(["fastapi"], tmp_path, arch="arm64", python_version="3.12")
    assert "--only-binary=:all:" in command
    assert "--python-version=3.12" in command
    assert "--platform=manylinux2014_aarch64" in command
    assert f"--target={tmp_path}" in command
    assert command[-1] == "fastapi"
