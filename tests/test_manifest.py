"""The checkpoint manifest: round trip, upsert by name, relative paths, and name expansion to sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.errors import InputError
from evalsuite.manifest import (
    CheckpointEntry,
    checkpoint_name,
    expand_name,
    format_beta,
    read_manifest,
    resolve_base,
    resolve_path,
    upsert_entry,
)


def _entry(name: str, variant: str, beta: float | None, path: str, **kw: object) -> CheckpointEntry:
    return CheckpointEntry(name=name, variant=variant, beta=beta, path=path, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("beta", "text"), [(0.05, "0.05"), (0.1, "0.1"), (0.5, "0.5"), (2.0, "2"), (2, "2"), (1.5, "1.5"), (5.0, "5")]
)
def test_beta_is_formatted_minimally(beta: float, text: str) -> None:
    assert format_beta(beta) == text
    assert checkpoint_name("dpo", beta) == f"dpo-b{text}"


def test_a_variant_without_beta_is_named_after_itself() -> None:
    assert checkpoint_name("sft", None) == "sft"


def test_missing_manifest_is_empty(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "nope.json") == []


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    entry = _entry(
        "dpo-b0.1",
        "dpo",
        0.1,
        str(tmp_path / "dpo-b0.1"),
        base="/models/sft",
        adapter=True,
        metrics=str(tmp_path / "dpo-b0.1" / "metrics.jsonl"),
        flags=[{"code": "margin_exploding", "message": "margin grew to 48.2 by step 120", "fix": "raise beta"}],
        created="2025-01-01T00:00:00+00:00",
        extra={"steps": 120, "options": {"lr": 1e-6}},
    )
    upsert_entry(manifest, entry)
    [back] = read_manifest(manifest)
    assert back.name == "dpo-b0.1" and back.variant == "dpo" and back.beta == 0.1
    assert back.adapter is True and back.base == "/models/sft"
    assert back.flags == entry.flags and back.extra == entry.extra and back.created == entry.created
    # Paths inside the manifest's folder are stored relative, so the folder can move as a whole.
    assert back.path == "dpo-b0.1" and back.metrics == "dpo-b0.1/metrics.jsonl"
    assert resolve_path(manifest, back) == (tmp_path / "dpo-b0.1").resolve()


def test_paths_outside_the_folder_stay_absolute(tmp_path: Path) -> None:
    manifest = tmp_path / "runs" / "manifest.json"
    upsert_entry(manifest, _entry("sft", "sft", None, str(tmp_path / "elsewhere" / "sft")))
    [back] = read_manifest(manifest)
    assert back.path == str(tmp_path / "elsewhere" / "sft")
    assert resolve_path(manifest, back) == tmp_path / "elsewhere" / "sft"


def test_upsert_replaces_the_entry_of_the_same_name(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    upsert_entry(manifest, _entry("dpo-b0.1", "dpo", 0.1, "old", extra={"steps": 1}))
    upsert_entry(manifest, _entry("sft", "sft", None, "sft"))
    upsert_entry(manifest, _entry("dpo-b0.1", "dpo", 0.1, "new", extra={"steps": 2}))
    entries = read_manifest(manifest)
    assert [e.name for e in entries] == ["sft", "dpo-b0.1"]
    assert entries[1].path == "new" and entries[1].extra == {"steps": 2}
    # The write goes through a temp file and a rename: nothing is left beside the manifest.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["manifest.json"]
    assert json.loads(manifest.read_text())["version"] == 1


def test_created_is_stamped_when_missing(tmp_path: Path) -> None:
    upsert_entry(tmp_path / "m.json", _entry("sft", "sft", None, "sft"))
    assert read_manifest(tmp_path / "m.json")[0].created.startswith("20")


def test_expand_name_exact_then_variant_sweep_sorted_by_beta() -> None:
    entries = [
        _entry("dpo-b0.5", "dpo", 0.5, "a"),
        _entry("sft", "sft", None, "s"),
        _entry("dpo-b0.05", "dpo", 0.05, "b"),
        _entry("simpo-b2", "simpo", 2.0, "c"),
        _entry("dpo-b0.1", "dpo", 0.1, "d"),
    ]
    assert [e.name for e in expand_name(entries, "dpo")] == ["dpo-b0.05", "dpo-b0.1", "dpo-b0.5"]
    assert [e.name for e in expand_name(entries, "dpo-b0.1")] == ["dpo-b0.1"]
    assert [e.name for e in expand_name(entries, "sft")] == ["sft"]
    assert [e.name for e in expand_name(entries, "simpo")] == ["simpo-b2"]
    assert expand_name(entries, "kto") == []
    assert expand_name(entries, "dpo-b9") == []


def test_malformed_manifest_names_the_file(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(InputError, match="manifest.json"):
        read_manifest(manifest)
    manifest.write_text(json.dumps({"checkpoints": [{"name": "x"}]}))
    with pytest.raises(InputError, match=r"manifest\.json.*entry 1"):
        read_manifest(manifest)
    manifest.write_text(json.dumps([1, 2]))
    with pytest.raises(InputError, match="checkpoints"):
        read_manifest(manifest)


def test_unknown_fields_from_a_newer_writer_are_kept_in_extra(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"checkpoints": [{"name": "sft", "variant": "sft", "path": "sft", "future": 1}]}))
    [entry] = read_manifest(manifest)
    assert entry.extra == {"future": 1} and entry.beta is None and entry.adapter is False


def test_resolve_base_local_dir_or_hub_id(tmp_path: Path) -> None:
    (tmp_path / "sft").mkdir()
    manifest = tmp_path / "manifest.json"
    local = _entry("dpo-b0.1", "dpo", 0.1, "dpo-b0.1", base="sft", adapter=True)
    hub = _entry("dpo-b0.5", "dpo", 0.5, "dpo-b0.5", base="Qwen/Qwen2-0.5B", adapter=True)
    assert resolve_base(manifest, local) == (tmp_path / "sft").resolve()
    assert resolve_base(manifest, hub) == "Qwen/Qwen2-0.5B"
    assert resolve_base(manifest, _entry("sft", "sft", None, "sft")) is None
