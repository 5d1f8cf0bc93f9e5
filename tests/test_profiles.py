"""conf/ profiles: the record composes to the committed params.yaml, the smoke
profile is small with every feature on, and the README documents every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, load_params
from pipeline.optim.schedule import lr_multiplier
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml"))


def _compose_params_module():
    return load_script("scripts/compose-params")


def compose(tmp_path: Path, *overrides: str) -> Path:
    """Compose conf/ with `overrides` as `dvc exp run -S ...` would; return the file."""
    out = tmp_path / ("params-" + "-".join(overrides or ("default",)).replace("/", "_") + ".yaml")
    _compose_params_module().compose(out, list(overrides))
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Params:
    return load_params(compose(tmp_path_factory.mktemp("smoke"), "profile=smoke"))


def test_profiles_present():
    assert {"record", "smoke"} <= set(PROFILES)


def test_record_profile_composes_to_committed_params_byte_for_byte(tmp_path):
    # Byte equality, not just equal values: `dvc exp run` on the record profile
    # then leaves params.yaml untouched.
    composed = compose(tmp_path).read_text(encoding="utf-8")
    committed = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert composed == committed, (
        "params.yaml is not the composition of conf/ (record profile): edit "
        "conf/profile/record.yaml, then run scripts/compose-params"
    )


def test_record_profile_is_the_default_and_explicit_choice_agrees(tmp_path):
    default = compose(tmp_path).read_text(encoding="utf-8")
    explicit = compose(tmp_path, "profile=record").read_text(encoding="utf-8")
    assert default == explicit


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_with_the_values_its_file_sets(tmp_path, profile):
    """Each value a profile file writes reaches the validated Params; the rest is the record's."""
    loaded = load_params(compose(tmp_path, f"profile={profile}")).to_dict()
    record = load_params(ROOT / "params.yaml").to_dict()
    own = yaml.safe_load((ROOT / "conf" / "profile" / f"{profile}.yaml").read_text(encoding="utf-8"))
    own.pop("defaults", None)
    set_here = dict(_leaf_items(own))
    assert profile == "record" or set_here, f"{profile}.yaml sets nothing"
    for key, value in _leaf_items(loaded):
        want = set_here.get(key, dict(_leaf_items(record))[key])
        norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        assert norm(value) == norm(want), f"{profile}: {key}"


def _leaf_items(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaf_items(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def test_overrides_compose_on_top_of_a_profile(tmp_path):
    p = load_params(compose(tmp_path, "profile=smoke", "eval.stride=64", "model.xsa_last_n=1"))
    assert p.eval.stride == 64
    assert p.model.xsa_last_n == 1
    assert p.model.num_layers == 4  # still the smoke profile


def test_smoke_profile_only_overrides_the_record():
    # The record values live in one place: smoke starts from it.
    text = (ROOT / "conf" / "profile" / "smoke.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["defaults"] == ["record", "_self_"]


def test_conf_files_say_where_defaults_are_edited():
    for path in [ROOT / "conf" / "config.yaml", *(ROOT / "conf" / "profile").glob("*.yaml")]:
        head = path.read_text(encoding="utf-8")[:1200]
        assert "params.yaml" in head and "overwrit" in head, path


def test_smoke_has_every_feature_on(smoke: Params):
    m, t, s, e = smoke.model, smoke.train, smoke.swa, smoke.eval
    assert m.canon.placements in ("ABCD", "AC")
    assert m.xsa_last_n >= 1
    assert m.bigram_buckets > 0
    assert m.smear
    assert m.rope_ref_len < e.seq_len  # NTK scaling active at eval length
    assert t.qat_enabled
    assert s.enabled and s.method == "snapshots"
    assert t.ema_enabled
    assert 1 <= e.stride < e.seq_len  # sliding-window scoring
    assert 0 < t.val_loss_every < t.iterations


def test_smoke_is_small_and_deterministic(smoke: Params):
    m, t, e, d = smoke.model, smoke.train, smoke.eval, smoke.data
    assert len(smoke.seeds) == 2
    assert 2 <= m.num_layers <= 4
    assert 64 <= m.model_dim <= 128
    assert 128 <= t.seq_len <= 256
    assert t.train_batch_tokens <= 8 * t.seq_len * 4
    assert 60 <= t.iterations <= 150
    assert t.max_wallclock_seconds == 0
    assert not t.compile
    assert t.warmup_steps <= 5
    assert t.nproc_per_node == 1
    assert t.log_every == 1
    assert 0 < t.val_max_tokens <= 16384
    assert 128 <= e.seq_len <= 256 and 32 <= e.stride <= 64
    assert 0 < e.max_tokens <= 32768
    assert d.source == "embedded"
    assert 0 < d.max_docs <= 10_000 and d.val_docs < d.max_docs
    assert d.shard_tokens <= 1_000_000


def test_smoke_schedule_reaches_swa_and_qat_well_before_the_end(smoke: Params):
    t, s = smoke.train, smoke.swa
    muls = [lr_multiplier(step, 0.0, t) for step in range(t.iterations)]
    swa_steps = [i for i, mul in enumerate(muls) if mul < s.start_lrmul]
    qat_steps = [i for i, mul in enumerate(muls) if mul < t.qat_threshold]
    assert swa_steps and qat_steps
    assert t.iterations - qat_steps[0] >= 5, "QAT must be on for several steps"
    snapshots = [i for i in swa_steps if i % s.every == 0]
    assert len(snapshots) >= 3
    assert s.max_snapshots == 0 or s.max_snapshots >= 2


def test_smoke_quantises_its_matrices(smoke: Params):
    # With the record's 65,536-element threshold every toy tensor would be kept in float.
    m, q = smoke.model, smoke.quant
    assert m.model_dim * m.model_dim > q.keep_float_max_numel
    assert m.vocab_size * m.model_dim > q.keep_float_max_numel


# --------------------------------------------------------------------------- README


def _leaf_keys(node, prefix=""):
    if isinstance(node, dict) and node:  # an empty section ({}) is a key of its own
        for key, value in node.items():
            yield from _leaf_keys(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def test_readme_documents_every_params_key():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\|\s*`([a-z0-9_.]+)`\s*\|", readme, flags=re.MULTILINE))
    keys = set(_leaf_keys(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))))
    missing = sorted(keys - documented)
    assert not missing, f"README.md parameter table lacks: {missing}"
    unknown = sorted(k for k in documented - keys if "." in k or k == "seeds")
    assert not unknown, f"README.md documents keys params.yaml does not have: {unknown}"


def test_readme_record_values_match_params():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    keys = set(_leaf_keys(params))
    rows = re.findall(r"^\|\s*`([a-z0-9_.]+)`\s*\|\s*`([^`]*)`\s*\|", readme, flags=re.MULTILINE)
    rows = [(key, shown) for key, shown in rows if key in keys]
    assert {key for key, _ in rows} == keys
    for key, shown in rows:
        node = params
        for part in key.split("."):
            node = node[part]
        assert yaml.safe_load(shown) == node, f"README shows {key} = {shown}, params.yaml has {node!r}"
