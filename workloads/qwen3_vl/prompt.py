"""The Qwen3-VL request: OpenAI chat ``messages`` for one Shopify catalogue product.

The benchmark's input is fixed text, so it is reproduced character for character (including
the spellings "specifc" and "followng" of the official prompt): a change here changes every
prompt's tokens, hence the measured throughput and the accuracy.

Layout (MLPerf v6.0 reference, ``ShopifyGlobalCatalogue.formulate_loaded_sample``):

* ``system``: the task, then the JSON schema of :class:`ProductMetadata` as
  ``json.dumps(schema, indent=2)`` inside a ```json fence;
* ``user``: one text part with the title, the description and the candidate categories (the
  Python ``repr`` of the list, single-quoted, as the reference's f-string prints it), then
  one ``image_url`` part ``data:image/<PIL format>;base64,<bytes>``.

Guided decoding is off in the reference; :func:`response_format` gives the
``json_schema`` response format for the option that turns it on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from workloads.qwen3_vl.payload import ProductMetadata

__all__ = ["build_messages", "image_data_url", "response_format", "system_prompt", "user_text"]

_SYSTEM_TEMPLATE = """Please analyze the product from the user prompt
and provide the following fields in a valid JSON object:
- category
- brand
- is_secondhand

You must choose only one, which is the most appropriate, correct, and specifc
category out of the list of possible product categories.

The description of the product sometimes contains various types of source code
(e.g., JavaScript, CSS, HTML, etc.), where useful product information is embedded
somewhere inside the source code. For this task, you should extract the useful
product information from the source code and leverage it, and discard the
programmatic parts of the source code.

Your response should only contain a valid JSON object and nothing more, e.g.,
you should not fence the JSON object inside a ```json code block.
The JSON object should match the followng JSON schema:
```json
{schema}
```
"""

_USER_TEMPLATE = """The title of the product is the following:
```text
{title}
```

The description of the product is the following:
```text
{description}
```

The following are the possible product categories:
```json
{categories}
```
"""


@cache
def system_prompt() -> str:
    """The system message text (identical for every sample)."""
    return _SYSTEM_TEMPLATE.format(schema=json.dumps(ProductMetadata.model_json_schema(), indent=2))


def user_text(title: str, description: str, categories: Sequence[str]) -> str:
    """The user message's text part; ``categories`` is printed as a Python list literal."""
    return _USER_TEMPLATE.format(title=title, description=description, categories=repr(list(categories)))


def image_data_url(image: bytes, image_format: str) -> str:
    """``data:image/<format>;base64,...`` with PIL's format name (``JPEG``, ``PNG``, ...)."""
    return f"data:image/{image_format};base64,{base64.b64encode(image).decode('ascii')}"


def build_messages(
    title: str, description: str, categories: Sequence[str], image: bytes, image_format: str
) -> list[dict[str, Any]]:
    """The OpenAI chat ``messages`` of one sample (system prompt, then text + image)."""
    return [
        {"role": "system", "content": system_prompt()},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": user_text(title, description, categories)},
                {"type": "image_url", "image_url": {"url": image_data_url(image, image_format)}},
            ],
        },
    ]


def response_format() -> dict[str, Any]:
    """OpenAI ``response_format`` for guided (schema-constrained) decoding, off by default."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "product_metadata",
            "schema": ProductMetadata.model_json_schema(),
            "strict": True,
        },
    }
