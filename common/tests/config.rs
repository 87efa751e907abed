//! Composition, overrides and every error of the configuration, on the repository's conf/.

use naics_common::config::{EncoderMode, Precision, load, model_differences, selected_stages, stages};
use std::path::{Path, PathBuf};

fn conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

fn overrides(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn error(curriculum: Option<&str>, list: &[&str]) -> String {
    format!("{:#}", load(&conf(), curriculum, &overrides(list)).unwrap_err())
}

#[test]
fn composes_the_defaults() {
    let c = load(&conf(), None, &[]).unwrap().config;
    assert_eq!(c.experiment, "01_stage_easy");
    assert_eq!(c.model.name, "all-MiniLM-L6-v2");
    assert_eq!(
        (c.model.lora.r, c.model.lora.alpha, c.model.lora.dropout),
        (8, 16.0, 0.1)
    );
    assert_eq!(
        (c.model.moe.num_experts, c.model.moe.top_k, c.model.moe.hidden),
        (4, 2, 1024)
    );
    assert_eq!(c.model.moe.load_balance_coef, 0.01);
    assert_eq!((c.loss.temperature, c.loss.curvature), (0.07, 1.0));
    assert_eq!(
        (c.training.optimizer.lr, c.training.optimizer.weight_decay),
        (2e-4, 0.01)
    );
    assert_eq!(c.training.scheduler.warmup_steps, 500);
    assert_eq!((c.data.val_fraction, c.data.seed), (0.05, 42));
    assert_eq!(c.curriculum.positive_levels, None);
    assert_eq!(c.curriculum.positive_levels_above_leaves, Some(0));
    assert_eq!(c.curriculum.positive_distance_max, Some(2.0));
    assert_eq!(c.curriculum.bucket_percentages, vec![0.875, 0.125]);
    assert_eq!(c.curriculum.k_negatives, 16);
}

#[test]
fn curriculum_stages() {
    let medium = load(&conf(), Some("02_stage_medium"), &[]).unwrap().config;
    assert_eq!(medium.experiment, "02_stage_medium");
    assert_eq!(medium.curriculum.positive_levels_above_leaves, Some(1));
    assert_eq!(medium.curriculum.positive_distance_max, Some(3.0));
    assert_eq!(
        medium.curriculum.bucket_percentages,
        vec![0.25, 0.15, 0.15, 0.15, 0.15, 0.15]
    );
    let hard = load(&conf(), Some("03_stage_hard"), &[]).unwrap().config;
    assert_eq!(hard.curriculum.positive_distance_max, None);
    assert_eq!(hard.curriculum.difficulty_buckets, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(hard.curriculum.bucket_percentages[7], 0.30);
}

#[test]
fn overrides_replace_keys_and_groups() {
    let loaded = load(
        &conf(),
        Some("01_stage_easy"),
        &overrides(&[
            "training.trainer.max_epochs=20",
            "curriculum.positive_levels=[5, 6]",
            "curriculum.positive_levels_above_leaves=null",
            "curriculum.max_positives=3",
            "model=mpnet",
            "experiment=mine",
        ]),
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.training.trainer.max_epochs, 20);
    assert_eq!(c.curriculum.positive_levels, Some(vec![5, 6]));
    assert_eq!(c.curriculum.max_positives, Some(3));
    assert_eq!(c.model.name, "all-mpnet-base-v2");
    assert_eq!(c.model.encoder_mode, EncoderMode::Lora);
    assert_eq!(c.experiment, "mine");
    assert!(loaded.to_yaml().contains("max_epochs: 20"));
    let other = load(&conf(), None, &[]).unwrap();
    assert_ne!(loaded.hash(), other.hash());
    assert_eq!(other.hash(), load(&conf(), None, &[]).unwrap().hash());
}

#[test]
fn errors_name_the_key_and_the_nearest_valid_one() {
    assert_eq!(
        error(None, &["training.trainer.max_epoch=3"]),
        "unknown configuration key `training.trainer.max_epoch`; nearest valid key: `training.trainer.max_epochs`"
    );
    let e = error(None, &["curriculum.k_negatives=many"]);
    assert!(
        e.contains("configuration key `curriculum.k_negatives`") && e.contains("invalid type"),
        "{e}"
    );
    let e = error(Some("01_stage_eazy"), &[]);
    assert!(
        e.contains("curriculum/01_stage_eazy.yaml not found") && e.contains("nearest: `01_stage_easy`"),
        "{e}"
    );
    let e = error(None, &["model=mpnett"]);
    assert!(e.contains("nearest: `mpnet`"), "{e}");
    assert!(error(None, &["novalue"]).contains("must look like key=value"));
    let e = error(None, &["curriculum.positive_levels=[6]"]);
    assert!(
        e.contains("`curriculum.positive_levels` and `curriculum.positive_levels_above_leaves`")
            && e.contains("set one of them"),
        "{e}"
    );
    let e = error(None, &["curriculum.bucket_percentages=[0.5, 0.4]"]);
    assert!(e.contains("sum to 1"), "{e}");
    let e = error(None, &["curriculum.difficulty_buckets=[1, 9]"]);
    assert!(e.contains("bucket 9 is not in 1..=8"), "{e}");
    let e = error(None, &["curriculum.bucket_percentages=[1.0]"]);
    assert!(e.contains("1 percentages for 2 difficulty_buckets"), "{e}");
    let e = error(None, &["model.query_map.members=0"]);
    assert!(e.contains("`model.query_map.members`: must be at least 1"), "{e}");
    let e = format!("{:#}", load(Path::new("/nonexistent"), None, &[]).unwrap_err());
    assert!(e.contains("/nonexistent/config.yaml") && e.contains("--conf"), "{e}");
}

#[test]
fn model_differences_name_each_differing_key_with_both_values() {
    let ours = load(&conf(), None, &[]).unwrap().config;
    assert!(model_differences(&ours, &ours).is_empty());
    let theirs = load(
        &conf(),
        None,
        &overrides(&["model.query_map.members=1", "model.lora.r=4", "loss.temperature=0.5"]),
    )
    .unwrap()
    .config;
    assert_eq!(
        model_differences(&theirs, &ours),
        ["model.lora.r: 4 (here: 8)", "model.query_map.members: 1 (here: 3)"],
        "model keys only, sorted, theirs first"
    );
}

#[test]
fn unknown_keys_in_a_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    };
    copy(&conf(), dir.path());
    for g in ["data", "model", "loss", "training", "curriculum"] {
        copy(&conf().join(g), &dir.path().join(g));
    }
    std::fs::write(
        dir.path().join("loss/default.yaml"),
        "temperature: 0.07\ncurvature: 1.0\ntemprature: 3\n",
    )
    .unwrap();
    let e = format!("{:#}", load(dir.path(), None, &[]).unwrap_err());
    assert!(
        e.contains("loss.temprature") || e.contains("unknown field `temprature`"),
        "{e}"
    );
}

#[test]
fn the_stage_list_is_the_curriculum_folder_in_name_order() {
    let all = ["01_stage_easy", "02_stage_medium", "03_stage_hard"];
    assert_eq!(stages(&conf()).unwrap(), all);
    let icd = load(
        &conf(),
        Some("03_stage_hard"),
        &overrides(&["data=icd10cm", "profile=cpu_icd10cm"]),
    )
    .unwrap();
    assert_eq!(
        icd.config.experiment, "icd10cm_03_stage_hard",
        "data.name prefixes the stage"
    );
    assert_eq!(icd.config.curriculum.max_positives, Some(1));
    assert_eq!(icd.config.data.dir, std::path::PathBuf::from("data/icd10cm"));
    let named = load(&conf(), Some("01_stage_easy"), &overrides(&["data.name=occupations"])).unwrap();
    assert_eq!(named.config.experiment, "occupations_01_stage_easy");
    assert_eq!(selected_stages(&conf(), "all").unwrap(), all);
    assert_eq!(
        selected_stages(&conf(), "02_stage_medium").unwrap(),
        ["02_stage_medium"]
    );
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("curriculum")).unwrap();
    let e = format!("{:#}", stages(empty.path()).unwrap_err());
    assert!(e.contains("no curriculum stages"), "{e}");
}

#[test]
fn stage_epochs_set_one_stages_epochs() {
    let set = ["training.trainer.stage_epochs={03_stage_hard: 2}".to_string()];
    let hard = load(&conf(), Some("03_stage_hard"), &set).unwrap();
    assert_eq!(hard.config.training.trainer.max_epochs, 2);
    assert!(hard.to_yaml().contains("max_epochs: 2"), "{}", hard.to_yaml());
    let easy = load(&conf(), Some("01_stage_easy"), &set).unwrap().config;
    assert_eq!(easy.training.trainer.max_epochs, 3, "other stages keep max_epochs");
    let plain = load(&conf(), Some("01_stage_easy"), &[]).unwrap();
    let json = serde_json::to_string(&plain.config).unwrap();
    assert!(
        !json.contains("stage_epochs"),
        "an empty map leaves the config's hash as it was: {json}"
    );
    let e = error(None, &["training.trainer.stage_epochs={03_stage_hrad: 2}"]);
    assert!(
        e.contains("`training.trainer.stage_epochs.03_stage_hrad`: no curriculum stage")
            && e.contains("nearest: `03_stage_hard`"),
        "{e}"
    );
    let e = error(None, &["training.trainer.stage_epochs={03_stage_hard: 0}"]);
    assert!(e.contains("must be at least 1"), "{e}");
    let icd = load(&conf(), Some("03_stage_hard"), &overrides(&["profile=cpu_icd10cm"]))
        .unwrap()
        .config;
    assert_eq!(
        icd.training.trainer.max_epochs, 2,
        "the ICD-10-CM profile trains its hard stage twice"
    );
}

#[test]
fn a_profile_applies_its_keys_and_the_command_line_wins() {
    let c = load(&conf(), None, &overrides(&["profile=cpu_default"]))
        .unwrap()
        .config;
    assert_eq!(c.curriculum.max_positives, Some(8));
    assert_eq!(c.data.batch_size, 128);
    assert_eq!(c.training.trainer.max_epochs, 4);
    assert_eq!(c.training.scheduler.warmup_steps, 50);
    let c = load(&conf(), None, &overrides(&["data.batch_size=7", "profile=cpu_default"]))
        .unwrap()
        .config;
    assert_eq!(c.data.batch_size, 7, "a command-line override wins wherever it stands");
    let e = error(None, &["profile=cpu_defualt"]);
    assert!(e.contains("nearest: `cpu_default`"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(conf()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() && entry.file_name() != "profile" {
            let to = dir.path().join(entry.file_name());
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(entry.path()).unwrap() {
                let f = f.unwrap();
                if f.file_type().unwrap().is_file() {
                    std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
                }
            }
        }
    }
    std::fs::copy(conf().join("config.yaml"), dir.path().join("config.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("profile")).unwrap();
    std::fs::write(dir.path().join("profile/bad.yaml"), "data.batch_sise: 3\n").unwrap();
    let e = format!(
        "{:#}",
        load(dir.path(), None, &overrides(&["profile=bad"])).unwrap_err()
    );
    assert!(
        e.contains("profile/bad.yaml") && e.contains("nearest valid key: `data.batch_size`"),
        "{e}"
    );
}

#[test]
fn precision_is_auto_32_or_bf16() {
    let p = |v: &str| {
        load(&conf(), None, &overrides(&[&format!("training.trainer.precision={v}")]))
            .map(|l| l.config.training.trainer.precision)
    };
    assert_eq!(p("auto").unwrap(), Precision::Auto);
    assert_eq!(p("32").unwrap(), Precision::F32);
    assert_eq!(p("bf16").unwrap(), Precision::Bf16);
    let e = format!("{:#}", p("16-mixed").unwrap_err());
    assert!(
        e.contains("training.trainer.precision") && e.contains("16-mixed") && e.contains("auto, 32, bf16"),
        "{e}"
    );
    // Written back as it was read, so that a checkpoint's configuration loads again.
    let loaded = load(&conf(), None, &overrides(&["training.trainer.precision=32"])).unwrap();
    let json = serde_json::to_value(&loaded.config).unwrap();
    assert_eq!(json["training"]["trainer"]["precision"], "32");
}
