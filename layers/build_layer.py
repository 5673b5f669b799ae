"""Builds the shared Lambda layer into ``layers/build/python``.

    python layers/build_layer.py [--arch x86_64|arm64] [--python-version 3.12]

pip-installs the project's core dependencies (``[project].dependencies`` in pyproject.toml; not
the ``local``, ``models`` or ``dev`` extras) as manylinux wheels for the Lambda platform, removes
the distributions in ``EXCLUDED`` (each with its reason), test suites and bytecode, then copies
``shared/``. Fails when the layer and the function code together exceed Lambda's 250 MB unzipped
limit, or when torch, sentence-transformers or Milvus Lite ended up inside (models belong on the
GPU endpoint, and the functions talk to a Milvus server).

``--smoke PYTHON`` then imports every domain's handler with that interpreter, the layer and the
function code on its path (a Linux host of the same architecture, Python 3.12, with boto3
installed as the Lambda runtime has it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO_ROOT / "layers" / "build"
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024  # function code + every layer, unzipped
FORBIDDEN = ("torch", "sentence_transformers", "milvus_lite")
# Pulled in by core dependencies, never used by a function: removed after the install.
MILVUS_LITE = "pymilvus depends on the embedded Milvus Lite (with faiss-cpu and pyarrow, ~230 MB)"
EXCLUDED: dict[str, str] = {
    "milvus-lite": MILVUS_LITE + "; functions talk to a Milvus server",
    "faiss-cpu": MILVUS_LITE,
    "pyarrow": MILVUS_LITE,
    "boto3": "provided by the Lambda Python runtime (--bundle-boto3 keeps the pinned one)",
    "botocore": "provided by the Lambda Python runtime",
    "s3transfer": "provided by the Lambda Python runtime",
    "hf-xet": "huggingface_hub's download accelerator; functions never download models",
    "typer": "the quarry CLI's; no function imports it",
    "rich": "typer's terminal output",
    "pygments": "rich's syntax highlighting",
    "markdown-it-py": "rich's markdown rendering",
    "mdurl": "markdown-it-py's",
    "shellingham": "typer's shell detection",
}
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
# Imported by --smoke besides the handlers: what the aws profile's adapters load lazily.
SMOKE_MODULES = (
    "shared.container",
    "shared.adapters.milvus_vector_store",
    "shared.adapters.redis_client",
    "shared.adapters.s3_blob_store",
    "shared.adapters.eventbridge_event_bus",
    "shared.adapters.gpu_endpoint_embedder",
    "sqlalchemy.dialects.postgresql.psycopg",
)
# Lambda's Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34): these wheels all load.
MANYLINUX = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
PLATFORM_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
CODE_DIRS = ("functions", "shared")  # what the functions' code asset holds
PRUNE_DIRS = ("__pycache__",)
TEST_DIRS = ("tests",)  # packages' own test suites (pandas, numpy, ...): never imported
PRUNE_SUFFIXES = (".pyc", ".pyo")


class LayerError(Exception):
    """The layer cannot be used: too large, or it holds a forbidden package."""


def core_requirements(pyproject: Path) -> list[str]:
    """``[project].dependencies``: what every function needs, and nothing more."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"])


def pip_command(
    requirements: Sequence[str], target: Path, *, arch: str, python_version: str
) -> list[str]:
    platforms = [f"--platform={tag}_{PLATFORM_ARCH[arch]}" for tag in MANYLINUX]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation=cp",
        f"--python-version={python_version}",
        *platforms,
        f"--target={target}",
        *requirements,
    ]


def tree_size(root: Path) -> int:
    """Bytes of every file under ``root``, unzipped (what Lambda counts)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def code_size(repo_root: Path) -> int:
    return sum(tree_size(repo_root / name) for name in CODE_DIRS if (repo_root / name).is_dir())


def check_size(layer_bytes: int, code_bytes: int, limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES) -> int:
    """The unzipped total; raises ``LayerError`` above ``limit``."""
    total = layer_bytes + code_bytes
    if total > limit:
        raise LayerError(
            f"layer {_mb(layer_bytes)} + function code {_mb(code_bytes)} = {_mb(total)}, "
            f"over Lambda's unzipped limit of {_mb(limit)}"
        )
    return total


def forbidden_packages(site: Path, forbidden: Iterable[str] = FORBIDDEN) -> list[str]:
    """Top-level packages, modules or distributions in ``site`` that must not be in a function."""
    names = {_normalize(name) for name in forbidden}
    found = []
    for entry in site.iterdir() if site.is_dir() else ():
        if entry.name.endswith((".dist-info", ".egg-info")):
            # sentence_transformers-3.0.1.dist-info: the distribution's name, then its version
            name = _normalize(entry.name.split("-", 1)[0])
        elif entry.suffix == ".py":
            name = _normalize(entry.stem)
        else:
            name = _normalize(entry.name)
        if name in names:
            found.append(entry.name)
    return sorted(found)


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def prune(site: Path) -> None:
    """Bytecode caches and the packages' own test suites: never used in Lambda, only size."""
    for path in sorted(site.rglob("*"), reverse=True):
        if not path.exists():
            continue
        is_test_suite = path.name in TEST_DIRS and path.parent != site
        if path.is_dir() and (path.name in PRUNE_DIRS or is_test_suite):
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in PRUNE_SUFFIXES:
            path.unlink()


def remove_distribution(site: Path, name: str) -> bool:
    """Uninstalls distribution ``name`` from a ``pip --target`` folder by its RECORD."""
    wanted = _normalize(name)
    for dist_info in site.glob("*.dist-info"):
        if _normalize(dist_info.name.split("-", 1)[0]) != wanted:
            continue
        record = dist_info / "RECORD"
        files = [line.split(",", 1)[0] for line in record.read_text().splitlines() if line]
        for relative in files:
            path = (site / relative).resolve()
            if path.is_relative_to(site.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
        _remove_empty_dirs(site)
        return True
    return False


def _remove_empty_dirs(site: Path) -> None:
    for path in sorted((p for p in site.rglob("*") if p.is_dir()), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()


def copy_shared(repo_root: Path, site: Path) -> None:
    shutil.copytree(
        repo_root / "shared",
        site / "shared",
        ignore=shutil.ignore_patterns(*PRUNE_DIRS, *(f"*{s}" for s in PRUNE_SUFFIXES)),
        dirs_exist_ok=True,
    )


def largest(site: Path, count: int = 8) -> list[tuple[str, int]]:
    sizes = [(p.name, tree_size(p) if p.is_dir() else p.stat().st_size) for p in site.iterdir()]
    return sorted(sizes, key=lambda item: item[1], reverse=True)[:count]


def verify(site: Path, repo_root: Path, limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES) -> int:
    """Both checks on a built layer; returns the unzipped total."""
    bad = forbidden_packages(site)
    if bad:
        raise LayerError(f"forbidden packages in the layer: {', '.join(bad)}")
    return check_size(tree_size(site), code_size(repo_root), limit)


def build(
    *, arch: str, python_version: str, bundle_boto3: bool = False, repo_root: Path = REPO_ROOT
) -> int:
    site = repo_root / "layers" / "build" / "python"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    requirements = core_requirements(repo_root / "pyproject.toml")
    command = pip_command(requirements, site, arch=arch, python_version=python_version)
    subprocess.run(command, check=True)  # noqa: S603  (our own interpreter, fixed arguments)
    for name, reason in EXCLUDED.items():
        if bundle_boto3 and name in RUNTIME_PROVIDED:
            continue
        if remove_distribution(site, name):
            print(f"  removed {name}: {reason}")
    copy_shared(repo_root, site)
    prune(site)
    total = verify(site, repo_root)
    for name, size in largest(site):
        print(f"  {_mb(size):>10}  {name}")
    print(
        f"layer {_mb(tree_size(site))} + function code {_mb(code_size(repo_root))} = "
        f"{_mb(total)} unzipped (limit {_mb(LAMBDA_UNZIPPED_LIMIT_BYTES)}), {arch}, "
        f"Python {python_version}: {site.relative_to(repo_root)}"
    )
    return total


def smoke(python: str, repo_root: Path = REPO_ROOT) -> None:
    """Imports every domain's Lambda entry point and the aws adapters with ``python``, the
    function code first on the path and the layer after it, as in Lambda."""
    site = repo_root / "layers" / "build" / "python"
    domains = sorted(p.parent.name for p in (repo_root / "functions").glob("*/handler.py"))
    modules = [f"functions.{d}.handler" for d in domains] + list(SMOKE_MODULES)
    script = "; ".join(f"import {m}" for m in modules)
    env = {"PYTHONPATH": f"{repo_root}{os.pathsep}{site}", "PATH": os.defpath, "HOME": str(site)}
    subprocess.run([python, "-c", script], check=True, env=env, cwd=site)  # noqa: S603
    print(f"imported {len(modules)} modules with {python}: handlers of {', '.join(domains)}")


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Build the shared Lambda layer.")
    parser.add_argument("--arch", choices=sorted(PLATFORM_ARCH), default="x86_64")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument(
        "--bundle-boto3", action="store_true", help="keep boto3/botocore in the layer"
    )
    parser.add_argument("--smoke", metavar="PYTHON", help="then import every handler with it")
    args = parser.parse_args(argv)
    try:
        build(arch=args.arch, python_version=args.python_version, bundle_boto3=args.bundle_boto3)
        if args.smoke:
            smoke(args.smoke)
    except (LayerError, subprocess.CalledProcessError) as exc:
        print(f"layer build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
