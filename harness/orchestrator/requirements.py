"""Request class → resource requirements: the integration guide's table, read from `configs/models.yaml`.

    classes:
      simple:  {model: gemma-270m, tflops: 5,  vram_mb: 2048,  max_tokens: 256}
      complex: {model: qwen-30b,   tflops: 30, vram_mb: 20480, max_tokens: 1024}

Both classes must be present (the classifier can answer either), unknown keys are refused (a typo must
not silently fall back to a default), and every error is one line naming the bad key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.connector import Requirements
from harness.orchestrator.classifier import Label
from harness.yamlfile import first_problem, read_yaml


class ModelsConfigError(Exception):
    """A models file that cannot be used; the message is one line naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelClass(_Strict):
    """What one request of a class runs on, and how much of a GPU it reserves."""

    model: Annotated[str, Field(min_length=1)]
    tflops: Annotated[float, Field(gt=0)]
    vram_mb: Annotated[int, Field(gt=0)]
    max_tokens: Annotated[int, Field(gt=0)]
    """The completion cap of every inference of the class."""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7

    def requirements(self) -> Requirements:
        """The allocation request for this class (HostedAI's `Requirements`)."""
        return Requirements(model=self.model, tflops=self.tflops, vram_mb=self.vram_mb, max_tokens=self.max_tokens)


class _ClassTable(_Strict):
    simple: ModelClass
    complex: ModelClass


class ModelClasses(_Strict):
    """The whole file: one `ModelClass` per classification label."""

    classes: _ClassTable

    def for_label(self, label: Label) -> ModelClass:
        return self.classes.simple if label == "simple" else self.classes.complex


def parse_model_classes(data: Any, source: str = "models") -> ModelClasses:
    """A parsed models mapping, validated; `source` names it in errors."""
    try:
        return ModelClasses.model_validate(data)
    except ValidationError as exc:
        raise ModelsConfigError(f"{source}: {first_problem(exc)}") from None


def load_model_classes(path: str | Path) -> ModelClasses:
    return parse_model_classes(read_yaml(path, ModelsConfigError, "models file"), str(path))
