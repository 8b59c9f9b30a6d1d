"""A small, deterministic product catalogue in the Shopify dataset's on-disk format.

Used when no ``data_dir`` is configured, so the Qwen3-VL workload runs end to end on a laptop
with no dataset download. It is written as Hugging Face-style Parquet shards
(``data/train-00000-of-00001.parquet``, ``data/test-00000-of-00001.parquet``) with the real
column names and types, so the demo goes through the same loader as the real dataset:

=============================== ==========================================================
column                          type
=============================== ==========================================================
``product_image``               struct<bytes: binary, path: string> (PNG or JPEG bytes)
``product_title``               string
``product_description``         string (some contain HTML, as real merchant text does)
``potential_product_categories`` list<string> (8 candidates, the truth among them)
``ground_truth_category``       string, levels joined by ``" > "`` (depth 2-5)
``ground_truth_brand``          string
``ground_truth_is_secondhand``  bool
=============================== ==========================================================

Everything derives from ``random.Random(seed)``; images are drawn with PIL (varied sizes,
never resized afterwards). Candidates are mostly siblings and cousins of the true category, so
partial (prefix) matches are common, as in the real data.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

__all__ = ["DEMO_VERSION", "TAXONOMY", "leaf_paths", "make_rows", "write_demo"]

DEMO_VERSION = 1
"""Bump when the generator changes, so cached demo catalogues are rebuilt."""

TAXONOMY: dict[str, Any] = {
    "Apparel & Accessories": {
        "Clothing": {
            "Shirts & Tops": {"Polo Shirts": {}, "T-Shirts": {}, "Blouses": {}},
            "Outerwear": {"Coats & Jackets": {"Rain Coats": {}, "Parkas": {}}, "Vests": {}},
        },
        "Shoes": {"Athletic Shoes": {}, "Boots": {}, "Sandals": {}},
        "Handbags": {},
    },
    "Sporting Goods": {
        "Outdoor Recreation": {
            "Cycling": {"Bicycle Accessories": {"Bicycle Lights": {}, "Bicycle Locks": {}}, "Helmets": {}},
            "Camping & Hiking": {"Tents": {}, "Sleeping Bags": {}},
        },
        "Fitness & General Exercise Equipment": {"Yoga Mats": {}, "Dumbbells": {}},
    },
    "Home & Garden": {
        "Kitchen & Dining": {
            "Cookware & Bakeware": {"Frying Pans": {}, "Baking Sheets": {}},
            "Tableware": {"Mugs": {}, "Plates": {}},
        },
        "Decor": {"Candles": {}, "Vases": {}, "Wall Clocks": {}},
        "Lawn & Garden": {"Planters": {}},
    },
    "Electronics": {
        "Audio": {"Headphones": {}, "Speakers": {}},
        "Cameras & Optics": {
            "Cameras": {"Video Cameras": {"Drone Video Cameras": {}, "Cinema Video Cameras": {}}}
        },
    },
    "Animals & Pet Supplies": {
        "Pet Supplies": {"Dog Supplies": {"Dog Toys": {}, "Dog Beds": {}}, "Cat Supplies": {"Cat Toys": {}}},
    },
}
"""A small tree in the style of the Shopify product taxonomy (names joined by ``" > "``)."""

_BRANDS = [
    "Frendorf",
    "Nordlys",
    "Acme Outdoor",
    "Maison Claire",
    "Kuro",
    "Bluefin",
    "Tallow & Co",
    "Ridgeway",
]
_ADJECTIVES = ["Classic", "Premium", "Lightweight", "Handmade", "Waterproof", "Compact", "Vintage", "Organic"]
_COLORS = {
    "red": (200, 40, 40),
    "blue": (40, 80, 200),
    "green": (40, 150, 70),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
    "orange": (230, 130, 30),
}


def leaf_paths(tree: dict[str, Any] | None = None, prefix: tuple[str, ...] = ()) -> list[str]:
    """All paths from the root to a leaf of ``tree`` (default :data:`TAXONOMY`), depth-first."""
    tree = TAXONOMY if tree is None else tree
    out: list[str] = []
    for name, sub in tree.items():
        path = (*prefix, name)
        if sub:
            out.extend(leaf_paths(sub, path))
        else:
            out.append(" > ".join(path))
    return out


def _candidates(rng: random.Random, truth: str, leaves: list[str], k: int = 8) -> list[str]:
    """``k`` candidate categories: the truth, its closest relatives first, then random leaves."""
    levels = truth.split(" > ")

    def shared(p: str) -> int:
        n = 0
        for a, b in zip(p.split(" > "), levels, strict=False):
            if a != b:
                break
            n += 1
        return n

    others = [p for p in leaves if p != truth]
    rng.shuffle(others)
    others.sort(key=shared, reverse=True)  # stable: random order within equal kinship
    picked = others[: k // 2] + rng.sample(others[k // 2 :], k - 1 - k // 2)
    out = [truth, *picked]
    rng.shuffle(out)
    return out


def _image(rng: random.Random, color: str, fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    w, h = rng.randint(64, 160), rng.randint(64, 160)
    bg = tuple(rng.randint(180, 255) for _ in range(3))
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    fill = _COLORS[color]
    x0, y0 = rng.randint(0, w // 3), rng.randint(0, h // 3)
    x1, y1 = rng.randint(2 * w // 3, w - 1), rng.randint(2 * h // 3, h - 1)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill, outline=(0, 0, 0))
    draw.line([0, rng.randint(0, h - 1), w - 1, rng.randint(0, h - 1)], fill=(0, 0, 0), width=2)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=90)
    else:
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def make_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` product rows (dicts with the dataset's column names), deterministic in ``seed``."""
    rng = random.Random(seed)
    leaves = leaf_paths()
    rows = []
    for i in range(n):
        truth = leaves[rng.randrange(len(leaves))]
        leaf = truth.split(" > ")[-1]
        brand, adj, color = rng.choice(_BRANDS), rng.choice(_ADJECTIVES), rng.choice(sorted(_COLORS))
        secondhand = rng.random() < 0.25
        title = f"{brand} | {adj} {color} {leaf.rstrip('s')}"
        desc = (
            f"{'Pre-owned, gently used. ' if secondhand else ''}{adj} {leaf.lower()} by {brand}, "
            f"in {color}. Item {i:05d}."
        )
        if rng.random() < 0.3:  # merchant descriptions often arrive wrapped in markup
            desc = (
                f'<div class="product"><p>{desc}</p><script>var sku="{brand[:3].upper()}-{i}";</script></div>'
            )
        fmt = "JPEG" if i % 2 == 0 else "PNG"
        rows.append(
            {
                "product_image": {"bytes": _image(rng, color, fmt), "path": f"demo_{i:05d}.{fmt.lower()}"},
                "product_title": title,
                "product_description": desc,
                "potential_product_categories": _candidates(rng, truth, leaves),
                "ground_truth_category": truth,
                "ground_truth_brand": brand,
                "ground_truth_is_secondhand": secondhand,
            }
        )
    return rows


def write_demo(out_dir: str | Path, n: int, seed: int = 0, row_group_size: int = 8) -> Path:
    """Write ``n`` rows as ``data/train-*.parquet`` (first 3/4) and ``data/test-*.parquet``.

    Returns:
        ``out_dir`` (a valid ``data_dir`` for the workload).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("product_image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("product_title", pa.string()),
            ("product_description", pa.string()),
            ("potential_product_categories", pa.list_(pa.string())),
            ("ground_truth_category", pa.string()),
            ("ground_truth_brand", pa.string()),
            ("ground_truth_is_secondhand", pa.bool_()),
        ]
    )
    rows = make_rows(n, seed)
    n_train = n - n // 4
    data = Path(out_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", rows[:n_train]), ("test", rows[n_train:])):
        table = pa.Table.from_pylist(part, schema=schema)
        pq.write_table(table, data / f"{split}-00000-of-00001.parquet", row_group_size=row_group_size)
    return Path(out_dir)
