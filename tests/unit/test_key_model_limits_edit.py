"""Setting, changing and removing a key's own limits per model (the use case behind
``model_limits`` in the admin API and ``--model-limit`` in the CLI)."""

from __future__ import annotations

import click
import pytest

from llmserver.cli_limits import model_limits_edit
from llmserver.domain.audit import changed_only, key_settings
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.key_admin import KeyAdmin, KeyEdit
from llmserver.domain.key_limits import MAX_QUOTA_TOKENS, MAX_RPM, ModelLimit
from llmserver.domain.registry import MODEL_ID_MAX_CHARS


async def test_limits_are_stored_by_model_id_and_edited_model_by_model(admin: KeyAdmin) -> None:
    key, _ = await admin.create(
        name="svc", rpm_limit=60, model_limits={"demo": {"rpm_limit": 5, "tpm_limit": 1_000}}
    )
    assert key.model_limits == (ModelLimit("demo-tiny-llama", 5, 1_000),)

    before, after = await admin.update(
        key.id, KeyEdit(model_limits={"tiny": {"rpm_limit": 2}, "demo": {"tpm_limit": None}})
    )
    # "demo" named with no limit left: removed; "tiny" added; sorted by id.
    assert after.model_limits == (ModelLimit("tiny", rpm_limit=2),)
    _, kept = await admin.update(key.id, KeyEdit(rpm_limit=10))
    assert kept.model_limits == after.model_limits
    _, removed = await admin.update(key.id, KeyEdit(model_limits={"tiny": None}))
    assert removed.model_limits == ()

    old, new = changed_only(key_settings(before), key_settings(after))
    assert old == {
        "model_limits": {
            "demo-tiny-llama": {"rpm_limit": 5, "tpm_limit": 1_000, "quota_tokens": None}
        }
    }
    assert new == {
        "model_limits": {"tiny": {"rpm_limit": 2, "tpm_limit": None, "quota_tokens": None}}
    }


async def test_a_quota_alone_is_a_model_limit_and_zero_is_a_quota(admin: KeyAdmin) -> None:
    key, _ = await admin.create(name="svc", model_limits={"tiny": {"quota_tokens": 0}})
    assert key.model_limits == (ModelLimit("tiny", quota_tokens=0),)

    _, after = await admin.update(
        key.id, KeyEdit(model_limits={"tiny": {"quota_tokens": MAX_QUOTA_TOKENS, "rpm_limit": 3}})
    )
    assert after.model_limits == (ModelLimit("tiny", 3, None, MAX_QUOTA_TOKENS),)
    assert key_settings(after)["model_limits"] == {
        "tiny": {"rpm_limit": 3, "tpm_limit": None, "quota_tokens": MAX_QUOTA_TOKENS}
    }


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"nope": {"rpm_limit": 1}}, "Unknown model 'nope' in model_limits"),
        ({"tiny": {"rpm_limit": 0}}, r"model_limits\['tiny'\].rpm_limit must be between 1"),
        ({"tiny": {"tpm_limit": MAX_RPM * 10**4}}, "tpm_limit must be between"),
        ({"tiny": {"quota": 5}}, "Unknown limit 'quota' in model_limits"),
        ({"tiny": {"quota_tokens": -1}}, r"\.quota_tokens must be between 0 and"),
        ({"tiny": {"quota_tokens": MAX_QUOTA_TOKENS + 1}}, "quota_tokens must be between"),
        ({"x" * (MODEL_ID_MAX_CHARS + 1): {"rpm_limit": 1}}, "1 to 200 characters"),
    ],
)
async def test_a_bad_model_limit_is_refused_naming_the_field(
    admin: KeyAdmin, limits: dict[str, dict[str, int]], message: str
) -> None:
    key, _ = await admin.create(name="svc")
    # A model configured later is allowed on request, but never a name the column cannot hold.
    edit = KeyEdit(model_limits=limits, allow_unknown_models="Unknown model" not in message)
    with pytest.raises(InvalidRequest, match=message) as caught:
        await admin.update(key.id, edit)
    assert caught.value.param == "model_limits"
    assert (await admin.find(key.id)).model_limits == ()


def test_the_cli_option_reads_model_colon_limits() -> None:
    edit = model_limits_edit(
        ["llama3:8b:rpm=5,tpm=1000", "tiny:none", "demo:rpm=none", "big:quota=50000"]
    )
    assert edit == {
        "llama3:8b": {"rpm_limit": 5, "tpm_limit": 1000},
        "tiny": None,
        "demo": {"rpm_limit": None},
        "big": {"quota_tokens": 50_000},
    }
    for bad in ("tiny", "tiny:rpm=x", "tiny:quota=-5", "tiny:budget=5", ":rpm=5"):
        with pytest.raises(click.BadParameter, match=r"expected|is not rpm=N"):
            model_limits_edit([bad])
