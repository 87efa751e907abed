"""The Python package against the command-line programs on the mini tree's trained model: the
same answers, the same row errors, the same messages, and what only Python has (pandas, Arrow,
NumPy, threads)."""

import json
import math
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import naics_embed
from conftest import LEAVES, STAGE, program

TEXTS = ["soybean farming", "growing wheat and barley", "cattle ranch", "breakfast cereal manufacturing"]
# Over the model's 128 tokens.
LONG = "soybean farm " * 80


def cli(trained, *args):
    """naics-trainer in the trained model's folder: (exit code, stdout, stderr)."""
    done = subprocess.run(
        [program("naics-trainer"), *map(str, args)], cwd=trained, capture_output=True, text=True
    )
    return done.returncode, done.stdout, done.stderr


def test_search_answers_as_the_command_line(trained, coder):
    got = coder.search("soybean farming", k=3)
    code, out, err = cli(trained, "search", "soybean farming", "-k", "3", "--json", "-c", STAGE)
    assert code == 0, err
    assert got == json.loads(out)
    assert [r["code"] for r in got["ranked"]][:1] == ["111110"]
    assert len(got["ranked"]) == 3 and {r["code"] for r in got["ranked"]} <= LEAVES
    confidences = [r["confidence"] for r in got["ranked"]]
    assert confidences == sorted(confidences, reverse=True)
    assert got["ranked"][0]["path"][0][0] == "11"
    # More than there are leaves gives them all.
    assert len(coder.search("soybean farming", k=50)["ranked"]) == len(LEAVES)


def test_load_by_path_and_errors_with_the_command_lines_messages(trained, coder, tmp_path, monkeypatch):
    by_path = naics_embed.Coder.load(path=coder.checkpoint)
    assert by_path.search("cattle ranch") == coder.search("cattle ranch")
    assert STAGE in repr(coder) and "4 leaves" in repr(coder)
    assert coder.experiment == STAGE and coder.dim == 16

    monkeypatch.chdir(trained)
    with pytest.raises(FileNotFoundError) as missing:
        naics_embed.Coder.load(experiment="no_such_stage")
    _, _, err = cli(trained, "search", "x", "-c", "no_such_stage")
    assert str(missing.value) == err.strip().removeprefix("error: ")
    assert "run `naics-trainer fit -c no_such_stage` first" in str(missing.value)

    # No conf/ here: the default (the last curriculum stage) cannot be found.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="curriculum"):
        naics_embed.Coder.load()
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        naics_embed.Coder.load(path=tmp_path / "nothing.safetensors")


def test_classify_from_a_list_a_series_and_an_arrow_column(trained, coder, tmp_path):
    table = coder.classify(TEXTS, k=3)
    assert isinstance(table, pa.Table) and table.num_rows == len(TEXTS)
    assert table.column_names[:3] == ["code_1", "code_2", "code_3"]
    assert table.column_names[-6:] == [
        "answer_code", "answer_title", "answer_level", "answer_confidence", "abstained", "error"
    ]
    for text, code in zip(TEXTS, table.column("code_1").to_pylist()):
        assert code == coder.search(text, k=1)["ranked"][0]["code"]
    assert table.column("error").null_count == len(TEXTS)

    assert coder.classify(pd.Series(TEXTS), k=3).equals(table)
    assert coder.classify(pa.array(TEXTS), k=3).equals(table)
    chunked = pa.table({"text": TEXTS}).column("text")
    assert coder.classify(chunked, k=3).equals(table)
    # Zero-copy onward to pandas.
    frame = table.to_pandas()
    assert list(frame["code_1"]) == table.column("code_1").to_pylist()

    # The command line on the same texts writes the same answer columns.
    pq.write_table(pa.table({"text": TEXTS}), tmp_path / "in.parquet")
    code, _, err = cli(
        trained, "classify", "--input", tmp_path / "in.parquet", "--text-column", "text",
        "-k", "3", "--output", tmp_path / "out.parquet", "-c", STAGE,
    )
    assert code == 0, err
    written = pq.read_table(tmp_path / "out.parquet").drop_columns(["text"])
    assert written.equals(table)


def test_bad_rows_get_their_error_and_the_rest_are_coded(coder):
    texts = ["soybean farming", None, "", "   ", 5, LONG, float("nan"), "cattle ranch"]
    table = coder.classify(texts).to_pydict()
    errors = table["error"]
    assert errors[0] is None and errors[-1] is None
    assert errors[1] == "no text (null)" and errors[6] == "no text (null)"
    assert errors[2] == errors[3] == "empty text"
    assert errors[4] == "expected a string, got int"
    assert "longer than the model's 128 tokens" in errors[5]
    assert table["code_1"][0] == "111110" and table["code_1"][1] is None
    assert table["abstained"][1] is None and table["abstained"][0] is False
    # --truncate: the long text is coded from its beginning.
    assert coder.classify([LONG], truncate=True).to_pydict()["error"] == [None]
    # A null inside an Arrow column and a missing value in a Series are rows, not exceptions.
    assert coder.classify(pa.array(["cattle ranch", None])).column("error").to_pylist() == [None, "no text (null)"]
    assert coder.classify(pd.Series(["cattle ranch", None])).column("error").to_pylist() == [None, "no text (null)"]


def test_bad_arguments_and_types_raise_with_the_servers_messages(coder):
    with pytest.raises(ValueError, match=r"^k: 0: expected at least 1$"):
        coder.search("cattle", k=0)
    with pytest.raises(ValueError, match=r"^k: -2: expected at least 1$"):
        coder.classify(TEXTS, k=-2)
    with pytest.raises(ValueError, match=r"^min_confidence: 2: expected 0 to 1$"):
        coder.search("cattle", min_confidence=2.0)
    with pytest.raises(ValueError, match=r"^abstain: -0.5: expected 0 to 1$"):
        coder.classify(TEXTS, abstain=-0.5)
    with pytest.raises(ValueError, match="text: empty text"):
        coder.search("  ")
    with pytest.raises(TypeError):
        coder.search(42)
    with pytest.raises(TypeError, match="got one str"):
        coder.classify("cattle ranch")
    with pytest.raises(TypeError, match=r'table\["text"\]'):
        coder.classify(pa.table({"text": TEXTS}))
    with pytest.raises(TypeError, match="got int"):
        coder.classify(7)
    with pytest.raises(TypeError, match=r"texts\[1\]: expected a string, got NoneType"):
        coder.embed(["cattle", None])


def test_embed_gives_points_on_the_hyperboloid(coder):
    points = coder.embed(TEXTS)
    assert points.shape == (len(TEXTS), coder.dim + 1) and points.dtype == np.float32
    lorentz = -points[:, 0].astype(np.float64) ** 2 + (points[:, 1:].astype(np.float64) ** 2).sum(axis=1)
    assert np.allclose(lorentz, -1.0 / coder.curvature, rtol=1e-4)
    assert coder.embed([]).shape == (0, coder.dim + 1)
    assert np.array_equal(coder.embed(pd.Series(TEXTS)), points)


def test_distance_is_the_lorentz_distance(coder):
    p = coder.embed(TEXTS).astype(np.float64)
    c = coder.curvature
    inner = -p[0, 0] * p[1:, 0] + (p[0, 1:] * p[1:, 1:]).sum(axis=1)
    expected = np.arccosh(np.maximum(-c * inner, 1.0)) / math.sqrt(c)
    got = coder.distance(p[0], p[1:])
    assert got.shape == (len(TEXTS) - 1,)
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-3)
    assert isinstance(coder.distance(p[0], p[1]), float)
    assert coder.distance(p[0], p[0]) < 1e-2
    assert np.allclose(coder.distance(p[1:], p[0]), got, atol=1e-5)
    with pytest.raises(ValueError, match="17 coordinates"):
        coder.distance(p[0, :5], p[1])
    with pytest.raises(ValueError, match="expected as many, or one"):
        coder.distance(p[:2], p[:3])


def test_codes_table(coder):
    codes = coder.codes()
    assert codes.column_names == ["code", "parent", "level", "title", "description", "leaf"]
    rows = codes.to_pylist()
    leaves = {r["code"] for r in rows if r["leaf"]}
    assert leaves == LEAVES
    by_code = {r["code"]: r for r in rows}
    assert by_code["111110"]["parent"] == "11111" and by_code["11"]["parent"] is None
    assert by_code["11"]["level"] == 2 and by_code["111110"]["level"] == 6 and by_code["111110"]["title"] == "Soybean Farming"


def test_threads_share_one_coder(coder):
    alone = [coder.classify(TEXTS, k=2) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        shared = list(pool.map(lambda _: coder.classify(TEXTS, k=2), range(4)))
        searched = list(pool.map(lambda t: coder.search(t, k=2), TEXTS))
    assert all(t.equals(alone[0]) for t in shared)
    assert searched == [coder.search(t, k=2) for t in TEXTS]


def test_help_shows_the_docstrings():
    assert "level-wise answer" in naics_embed.Coder.search.__doc__
    assert "error" in naics_embed.Coder.classify.__doc__
    assert naics_embed.Coder.load.__text_signature__ == "(path=None, experiment=None)"
    # The type stubs, installed beside the module.
    stub = Path(naics_embed.__file__).with_name("__init__.pyi").read_text()
    assert "def classify(" in stub and "-> pa.Table" in stub
