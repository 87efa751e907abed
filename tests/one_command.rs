//! The one command (`scripts/main.sh --tree TABLE --entries ENTRIES`) end to end on the small
//! generic CSV (tests/fixtures/generic/): ingest, build, the default curriculum's shards, fit and
//! eval, with the tests' mini model and a few positives per anchor so that it takes a minute.
//! It writes where a user's run would (data/trees/NAME/, checkpoints/, outputs/ of the
//! repository) under a name of its own, removed before and after.

mod common;

use std::path::PathBuf;
use std::process::Command;

const NAME: &str = "ci_one_command";

fn written() -> Vec<PathBuf> {
    let root = common::repo();
    let mut paths = vec![root.join("data/trees").join(NAME)];
    for stage in ["01_stage_easy", "02_stage_medium", "03_stage_hard"] {
        paths.push(root.join("checkpoints").join(format!("{NAME}_{stage}")));
        paths.push(root.join("outputs").join(format!("{NAME}_{stage}")));
    }
    paths
}

fn remove_written() {
    for p in written() {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[test]
fn one_command_trains_and_evaluates_a_generic_tree() {
    remove_written();
    let generic = common::fixtures().join("generic");
    let programs = common::program("naics-trainer").parent().unwrap().to_path_buf();
    let out = Command::new(common::repo().join("scripts/main.sh"))
        .args(["--tree"])
        .arg(generic.join("tree.csv"))
        .arg("--entries")
        .arg(generic.join("entries.csv"))
        .args(["--name", NAME])
        .args(common::MINI)
        .args(["curriculum.max_positives=2", "data.queries_per_step=8"])
        .env("NAICS_BIN", &programs)
        .output()
        .unwrap();
    let stdout = common::succeeded(&out);
    let root = common::repo();
    for stage in ["01_stage_easy", "02_stage_medium", "03_stage_hard"] {
        let index = root.join(format!("checkpoints/{NAME}_{stage}/index.json"));
        assert!(index.exists(), "{} missing", index.display());
        assert!(stdout.contains(&format!("fit {stage}:")), "{stdout}");
    }
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(format!("outputs/{NAME}_03_stage_hard/eval.json"))).unwrap())
            .unwrap();
    // A tenth of the 529 entries held out, each coded among the 46 leaves.
    let coding = &eval["coding"]["retrieval"];
    let queries = coding["queries"].as_u64().unwrap();
    assert!((40..=70).contains(&queries), "{coding}");
    let (top1, top5) = (coding["top1"].as_f64().unwrap(), coding["top5"].as_f64().unwrap());
    assert!(top1 > 0.2 && top5 >= top1, "{coding}");
    assert!(
        stdout.contains(&format!("tree {NAME}: tables in data/trees/{NAME}/")),
        "{stdout}"
    );
    remove_written();
}
