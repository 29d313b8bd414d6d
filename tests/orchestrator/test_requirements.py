"""configs/models.yaml: the guide's table, and one-line errors naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.connector import Requirements
from harness.orchestrator import ModelsConfigError, load_model_classes, parse_model_classes
from tests.orchestrator.support import CLASSES, ROOT

GOOD = {
    "classes": {
        "simple": {"model": "gemma-270m", "tflops": 5, "vram_mb": 2048, "max_tokens": 256},
        "complex": {"model": "qwen-30b", "tflops": 30, "vram_mb": 20480, "max_tokens": 1024},
    }
}


def test_the_shipped_file_is_the_guides_table() -> None:
    assert CLASSES.for_label("simple").requirements() == Requirements(
        model="gemma-270m", tflops=5, vram_mb=2048, max_tokens=256
    )
    assert CLASSES.for_label("complex").requirements() == Requirements(
        model="qwen-30b", tflops=30, vram_mb=20480, max_tokens=1024
    )
    assert CLASSES.for_label("complex").temperature == 0.7
    assert load_model_classes(ROOT / "configs" / "models.yaml") == parse_model_classes(GOOD)


def _with(cls: str, **fields: object) -> dict[str, object]:
    classes = {name: dict(spec) for name, spec in GOOD["classes"].items()}
    classes[cls].update(fields)
    return {"classes": classes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with("simple", tflops=-1), "models.yaml: classes.simple.tflops: Input should be greater than 0"),
        (_with("complex", max_tokens="many"), "models.yaml: classes.complex.max_tokens: Input should be a valid"),
        (_with("simple", gpu="H100"), "models.yaml: classes.simple.gpu: Extra inputs are not permitted"),
        ({"classes": {"simple": GOOD["classes"]["simple"]}}, "models.yaml: classes.complex: Field required"),
        ({"klasses": {}}, "models.yaml: classes: Field required"),
        ([1, 2], "models.yaml: Input should be a valid dictionary"),
    ],
)
def test_errors_name_the_bad_key_on_one_line(data: object, message: str) -> None:
    with pytest.raises(ModelsConfigError) as caught:
        parse_model_classes(data, "models.yaml")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ModelsConfigError, match=r"missing\.yaml: cannot read the models file"):
        load_model_classes(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [unclosed")
    with pytest.raises(ModelsConfigError, match=r"bad\.yaml: not valid YAML"):
        load_model_classes(bad)
