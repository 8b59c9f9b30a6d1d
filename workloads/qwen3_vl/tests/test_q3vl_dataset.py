"""Sample library, request layout and demo catalogue of the qwen3_vl workload."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workloads.qwen3_vl import WORKLOAD
from workloads.qwen3_vl.dataset import ProductCatalogueLibrary, demo_dir, load_library
from workloads.qwen3_vl.demo import make_rows, write_demo
from workloads.qwen3_vl.prompt import system_prompt

EXPECTED_SCHEMA = {
    "additionalProperties": False,
    "description": "Json format for the expected responses from the VLM.",
    "properties": {
        "category": {
            "description": 'The complete category of the product, e.g.,\n"Clothing & Accessories > Clothing > '
            'Shirts > Polo Shirts".\nEach categorical level is separated by " > ".',
            "title": "Category",
            "type": "string",
        },
        "brand": {
            "description": 'The brand of the product, e.g., "giorgio armani".',
            "title": "Brand",
            "type": "string",
        },
        "is_secondhand": {
            "description": "True if the product is second-hand, False otherwise.",
            "title": "Is Secondhand",
            "type": "boolean",
        },
    },
    "required": ["category", "brand", "is_secondhand"],
    "title": "ProductMetadata",
    "type": "object",
}
N = 12  # 9 train + 3 test rows


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("q3vl"), N, seed=3, row_group_size=4)


@pytest.fixture(scope="module")
def rows():
    return make_rows(N, seed=3)


def _data_url_bytes(url: str) -> tuple[str, bytes]:
    header, _, payload = url.partition(",")
    return header, base64.b64decode(payload)


def test_workload_spec():
    assert WORKLOAD.mlperf_model == "qwen3-vl-235b-a22b"
    assert WORKLOAD.scenarios == ("Offline", "Server")
    assert WORKLOAD.default_sut == "hf_transformers"
    assert WORKLOAD.params["f1_target"] == 0.7824


def test_system_prompt_embeds_the_reference_schema():
    text = system_prompt()
    assert text.startswith(
        "Please analyze the product from the user prompt\nand provide the following fields"
    )
    assert "most appropriate, correct, and specifc\ncategory" in text  # the official spelling
    head, _, block = text.partition("The JSON object should match the followng JSON schema:\n```json\n")
    assert block.endswith("\n```\n")
    assert block[: -len("\n```\n")] == json.dumps(EXPECTED_SCHEMA, indent=2)


def test_splits_concatenated_train_then_test(root, rows):
    lib = ProductCatalogueLibrary(root)
    assert lib.total_count == lib.performance_count == N
    for i in (0, 8, 9, 11):  # 8 = last train row, 9 = first test row
        assert lib.ground_truth(i) == {
            "category": rows[i]["ground_truth_category"],
            "brand": rows[i]["ground_truth_brand"],
            "is_secondhand": rows[i]["ground_truth_is_secondhand"],
            "potential_product_categories": rows[i]["potential_product_categories"],
        }
    only_test = ProductCatalogueLibrary(root, splits=["test"])
    assert only_test.total_count == 3
    assert only_test.ground_truth(0)["category"] == rows[9]["ground_truth_category"]
    assert ProductCatalogueLibrary(root, count=5, performance_count=2).total_count == 5
    assert ProductCatalogueLibrary(root, count=5, performance_count=2).performance_count == 2


def test_request_layout_and_original_image_bytes(root, rows):
    lib = ProductCatalogueLibrary(root)
    lib.load([10, 0, 10, 3])
    for i in (0, 3, 10):
        msgs = lib.get(i)["messages"]
        assert [m["role"] for m in msgs] == ["system", "user"]
        assert msgs[0]["content"] == system_prompt()
        text, image = msgs[1]["content"]
        assert text["type"] == "text" and image["type"] == "image_url"
        row = rows[i]
        assert text["text"] == (
            f"The title of the product is the following:\n```text\n{row['product_title']}\n```\n\n"
            f"The description of the product is the following:\n```text\n{row['product_description']}\n```\n\n"
            f"The following are the possible product categories:\n```json\n{row['potential_product_categories']}\n```\n"
        )
        header, data = _data_url_bytes(image["image_url"]["url"])
        assert header == ("data:image/JPEG;base64" if i % 2 == 0 else "data:image/PNG;base64")
        assert data == row["product_image"]["bytes"]  # never re-encoded nor resized
        assert set(lib.get(i)) == {"messages"}
    assert pickle.loads(pickle.dumps(lib.get(3))) == lib.get(3)
    lib.unload([3])
    with pytest.raises(KeyError, match="sample 3 is not loaded"):
        lib.get(3)
    with pytest.raises(IndexError, match="out of range"):
        lib.load([N])


def test_guided_decoding_and_reencode_options(root, rows):
    lib = ProductCatalogueLibrary(root, guided_decoding=True, reencode_images=True)
    lib.load([0])
    payload = lib.get(0)
    assert payload["params"]["response_format"]["json_schema"]["schema"] == EXPECTED_SCHEMA
    header, data = _data_url_bytes(payload["messages"][1]["content"][1]["image_url"]["url"])
    assert header == "data:image/JPEG;base64" and data[:3] == b"\xff\xd8\xff"
    assert data != rows[0]["product_image"]["bytes"]  # PIL re-encoding, as the reference does


def test_datasets_save_to_disk_layout(tmp_path, rows):
    """A ``DatasetDict.save_to_disk`` folder (Arrow stream files) reads the same as Parquet."""
    for split, part in (("train", rows[:9]), ("test", rows[9:])):
        d = tmp_path / split
        d.mkdir()
        table = pa.Table.from_pylist(part)
        with (
            pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as w,
        ):
            w.write_table(table)
        (d / "state.json").write_text(
            json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
        )
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["train", "test"]}')
    lib = ProductCatalogueLibrary(tmp_path)
    assert lib.total_count == N
    assert lib.ground_truth(10)["brand"] == rows[10]["ground_truth_brand"]
    lib.load([10])
    assert (
        _data_url_bytes(lib.get(10)["messages"][1]["content"][1]["image_url"]["url"])[1]
        == (rows[10]["product_image"]["bytes"])
    )


def test_bad_inputs_name_the_problem(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        ProductCatalogueLibrary(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="split 'validation'"):
        ProductCatalogueLibrary(root, splits=["validation"])
    table = pq.read_table(root / "data" / "train-00000-of-00001.parquet").drop_columns(["ground_truth_brand"])
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(ValueError, match=r"train.parquet: missing column\(s\) \['ground_truth_brand'\]"):
        ProductCatalogueLibrary(tmp_path, splits=["train"])
    with pytest.raises(ValueError, match="splits must be a non-empty list"):
        ProductCatalogueLibrary(root, splits="train")


def test_demo_is_deterministic_and_cached(tmp_path, monkeypatch):
    a, b = make_rows(6, seed=0), make_rows(6, seed=0)
    assert a == b
    assert make_rows(6, seed=1) != a
    depths = [len(r["ground_truth_category"].split(" > ")) for r in make_rows(32)]
    assert sorted(set(depths)) == [2, 3, 4, 5]
    for r in a:
        assert r["ground_truth_category"] in r["potential_product_categories"]
        assert len(set(r["potential_product_categories"])) == 8
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    lib = load_library({"data_dir": None, "demo_samples": 8})
    assert lib.total_count == 8
    path = demo_dir(8)
    assert path.parent == tmp_path and sorted(p.name for p in (path / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    mtime = (path / "data" / "train-00000-of-00001.parquet").stat().st_mtime_ns
    assert demo_dir(8) == path  # reused, not regenerated
    assert (path / "data" / "train-00000-of-00001.parquet").stat().st_mtime_ns == mtime
    assert [lib.ground_truth(i)["category"] for i in range(8)] == [
        r["ground_truth_category"] for r in make_rows(8)
    ]


def test_ground_truth_carries_the_candidate_categories(root, rows, tmp_path):
    """The scorer's random baseline draws one of each sample's candidates (``accuracy.py``), so
    ``ground_truth`` hands it the list the prompt shows; a bad list is one line naming the sample."""
    import numpy as np

    from workloads.qwen3_vl.accuracy import score

    lib = ProductCatalogueLibrary(root)
    cands = [lib.ground_truth(i)["potential_product_categories"] for i in range(N)]
    assert cands == [r["potential_product_categories"] for r in rows] and {len(c) for c in cands} == {8}
    lib.load([3])  # the same list, in the same order, as in the request
    text = lib.get(3)["messages"][1]["content"][0]["text"]
    assert "```json\n" + repr(cands[3]) + "\n```\n" in text

    # Every answer unparsable: each is_secondhand is drawn as the reference does, one generator per
    # chunk of max(12 // 4, 1) = 3 entries, drawing choice([T, F], size=1), then choice(candidates)
    # and choice([T, F]) per entry (re-done here with numpy directly).
    seeds = np.random.default_rng(12345).integers(0, 2**32, size=4)
    drawn = []
    for c, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for i in range(3 * c, 3 * c + 3):
            drawn.append(bool(rng.choice([True, False], size=1)[0]))
            rng.choice(cands[i])
            rng.choice([True, False])
    truth = [r["ground_truth_is_secondhand"] for r in rows]
    tp = sum(d and t for d, t in zip(drawn, truth, strict=True))
    fp = sum(d and not t for d, t in zip(drawn, truth, strict=True))
    fn = sum(t and not d for d, t in zip(drawn, truth, strict=True))
    res = score([(i, b"not json") for i in range(N)], lib, {"eval_workers": 4})
    assert res.metrics["unparsable"] == 12.0 and res.metrics["f1"] == 0.0
    assert res.metrics["is_secondhand_f1"] == (2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    assert (tp, fp, fn) == (3, 3, 0) and res.metrics["is_secondhand_f1"] == 6 / 9

    bad_rows = [dict(r) for r in make_rows(4, seed=3)]
    bad_rows[2]["potential_product_categories"] = None
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(bad_rows), tmp_path / "data" / "train.parquet")
    bad = ProductCatalogueLibrary(tmp_path, splits=["train"])
    assert bad.ground_truth(1)["potential_product_categories"] == bad_rows[1]["potential_product_categories"]
    with pytest.raises(ValueError, match=r"^.+: sample 2: potential_product_categories must be a list of strings, got NoneType$"):
        bad.ground_truth(2)
