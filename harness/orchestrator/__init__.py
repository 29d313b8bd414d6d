"""The Harpoon orchestrator: classify a text locally, run it on HostedAI, account its cost per tenant."""

from harness.orchestrator.accounting import Cost, CostLedger, CostTotals, ExactCost, charge, exact_charge
from harness.orchestrator.batching import BatchPolicy, SharedHold
from harness.orchestrator.catalogue import CatalogueSource, PoolCatalogue, PoolChoice
from harness.orchestrator.classifier import Classification, Classifier, HeuristicClassifier, Label
from harness.orchestrator.orchestrator import DEFAULT_TENANT, Orchestrator, TextTooLong, prompt_tokens
from harness.orchestrator.requirements import (
    ModelClass,
    ModelClasses,
    ModelsConfigError,
    load_model_classes,
    parse_model_classes,
)
from harness.orchestrator.result import BatchInfo, ProcessResult, Timings, Usage

__all__ = [
    "DEFAULT_TENANT",
    "BatchInfo",
    "BatchPolicy",
    "CatalogueSource",
    "Classification",
    "Classifier",
    "Cost",
    "CostLedger",
    "CostTotals",
    "ExactCost",
    "HeuristicClassifier",
    "Label",
    "ModelClass",
    "ModelClasses",
    "ModelsConfigError",
    "Orchestrator",
    "PoolCatalogue",
    "PoolChoice",
    "ProcessResult",
    "SharedHold",
    "TextTooLong",
    "Timings",
    "Usage",
    "charge",
    "exact_charge",
    "load_model_classes",
    "parse_model_classes",
    "prompt_tokens",
]
