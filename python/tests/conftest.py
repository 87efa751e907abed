"""A model trained on the mini tree (tests/fixtures/mini) by the command-line programs, once per
session, as tests/coding_at_work.rs trains it: the Python package must answer as they do.

The programs are looked for in $NAICS_BIN_DIR, else ${CARGO_TARGET_DIR:-target}/debug
(`cargo build --locked --bins` builds them); the model in data/models (scripts/fetch_model.sh).
"""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(
    os.environ.get("NAICS_BIN_DIR")
    or Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
)
STAGE = "03_stage_hard"
# The mini tree's leaves: its three six-digit codes and 1121, which has no children there.
LEAVES = {"111110", "111120", "1121", "311111"}


def program(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `cargo build --locked --bins` (or set NAICS_BIN_DIR)")
    return str(path)


def run(*args, cwd=None):
    """Runs a program; its stderr in the failure when it fails."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The working folder of a model trained on the mini tree: checkpoints/03_stage_hard/."""
    work = tmp_path_factory.mktemp("mini")
    data = work / "data"
    model = REPO / "data" / "models" / "all-MiniLM-L6-v2"
    if not (model / "tokenizer.json").exists():
        pytest.fail(f"{model} missing: run scripts/fetch_model.sh minilm (.ci/run does)")
    pipeline, trainer = program("naics-pipeline"), program("naics-trainer")
    run(pipeline, "--data", data, "ingest", "--input", REPO / "tests/fixtures/mini", "--holdout-fraction", "0.7")
    run(pipeline, "--data", data, "build")
    overrides = [
        f"data.dir={data}",
        f"data.shards_dir={data / 'shards'}",
        f"model.path={model}",
        # The end-to-end tests' small model (conf/profile/mini.yaml), as tests/common's.
        "profile=mini",
        "data.validation_entries=0.5",
    ]
    run(pipeline, "build-shards", "-c", STAGE, "--conf", REPO / "conf", *overrides, cwd=work)
    run(trainer, "fit", "-c", STAGE, "--conf", REPO / "conf", *overrides, cwd=work)
    return work


@pytest.fixture(scope="session")
def coder(trained):
    import naics_embed

    here = os.getcwd()
    os.chdir(trained)
    try:
        return naics_embed.Coder.load(experiment=STAGE)
    finally:
        os.chdir(here)
