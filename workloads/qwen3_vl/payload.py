"""The qwen3_vl response payload: the UTF-8 text of one bare JSON :class:`ProductMetadata`.

What the VLM (any SUT) must answer per sample, and what the scorer parses back. Anything but a
bare JSON object with exactly ``category`` (levels separated by :data:`CATEGORY_SEPARATOR`),
``brand`` and ``is_secondhand`` — a ```json fence, text around the object, a missing or extra
key — is unparsable (MLPerf ``mlperf_inf_mm_q3vl/evaluation.py``). The request's system prompt
carries this model's JSON schema (``prompt.py``).

This module is the contract between SUTs and the workload's scorer; it imports only pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["CATEGORY_SEPARATOR", "ProductMetadata", "parse_response"]

CATEGORY_SEPARATOR = " > "
"""Separator of the levels of a category path (each level is stripped when compared)."""


class ProductMetadata(BaseModel):
    """Json format for the expected responses from the VLM."""

    # extra="forbid" makes the JSON schema say additionalProperties=false and makes extra keys
    # in a response a validation error, both as in the reference.
    model_config = ConfigDict(extra="forbid")

    category: str = Field(
        description='The complete category of the product, e.g.,\n"Clothing & Accessories > Clothing > '
        'Shirts > Polo Shirts".\nEach categorical level is separated by " > ".'
    )
    brand: str = Field(description='The brand of the product, e.g., "giorgio armani".')
    is_secondhand: bool = Field(description="True if the product is second-hand, False otherwise.")


def parse_response(data: bytes | str) -> ProductMetadata | None:
    """Parse one response; ``None`` when it is not a bare JSON :class:`ProductMetadata`.

    Bytes that are not valid UTF-8 are unparsable too (the reference would crash on them).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return ProductMetadata.model_validate_json(data)
    except ValidationError:
        return None
