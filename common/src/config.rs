//! The configuration both programs read: `conf/config.yaml` composed from its groups, Hydra
//! style, then `key=value` overrides, then checked into typed structs.
//!
//! Semantics a Hydra user expects: `-c NAME` selects `conf/curriculum/NAME.yaml` and names the
//! experiment (`-c all`: every stage of `conf/curriculum/`, in name order; with `data.name` set,
//! experiments `NAME_01_stage_easy`, ...); `GROUP=NAME` selects
//! another file of a group (`model=mpnet`); `profile=NAME` applies the `key: value` overrides of
//! `conf/profile/NAME.yaml` (as Hydra's experiment configs do); `a.b.c=value` replaces one
//! existing key, the value parsed as YAML (`0.5`, `[5, 6]`, `null`, `text`). Command-line
//! overrides come last, so they win over a profile's.
//! Unknown keys, wrong types and missing files are errors naming the key and the nearest valid one.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const GROUPS: [&str; 5] = ["data", "model", "loss", "training", "curriculum"];

/// The group of override sets: `profile=NAME` reads `conf/profile/NAME.yaml`.
pub const PROFILE: &str = "profile";

/// `-c all`: every curriculum stage.
pub const ALL_STAGES: &str = "all";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub experiment: String,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub training: TrainingConfig,
    pub curriculum: CurriculumConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
    pub shards_dir: PathBuf,
    pub batch_size: usize,
    pub val_fraction: f64,
    pub seed: u64,
    /// Training index entries drawn per step as extra anchors (0: none).
    pub queries_per_step: usize,
    /// The share of training entries kept out of training to fit and calibrate the coder
    /// (`naics_common::share`, salt `validation`).
    pub validation_entries: f64,
    /// The tree's name: when set, it prefixes the experiments of its curriculum stages
    /// (`icd10cm` + `03_stage_hard` = `icd10cm_03_stage_hard`), so that trees sharing the
    /// default curriculum keep their checkpoints apart. Empty: the stage's name alone (NAICS).
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub path: PathBuf,
    pub hub_id: Option<String>,
    pub max_length: usize,
    pub pooling: Pooling,
    pub encoder_mode: EncoderMode,
    pub lora: LoraConfig,
    pub moe: MoeConfig,
    pub embedding_dim: usize,
    /// A trained offset per code added to its tangent vector before the exponential map: a
    /// code's point is then its texts' fusion plus a free correction (texts have none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub code_offsets: bool,
    /// A residual map on free text's tangent vectors (codes never go through it), fitted after
    /// the last stage a `fit` runs against every leaf at once. Absent or `hidden: 0`: none.
    #[serde(default, skip_serializing_if = "QueryMapConfig::is_off")]
    pub query_map: QueryMapConfig,
    /// Padded tokens per encoder call in `lora` mode: bounds the activations one backward keeps.
    pub chunk_tokens: usize,
    /// `lora` mode: recompute each layer in the backward pass from its saved input instead of
    /// keeping a whole call's activations (one more forward pass, far less memory).
    #[serde(default)]
    pub checkpoint_layers: bool,
    /// `lora` mode: keep every call's activations from the step's forward pass for its backward
    /// pass instead of replaying the calls (one forward pass less, the whole step's activations
    /// in memory, as PyTorch's autograd keeps them).
    #[serde(default)]
    pub keep_activations: bool,
}

/// The query map: `t + W2 relu(W1 [t; v] + b1) + b2` on a text's tangent vector t (v: the text's
/// encoder vector), W2 and b2 zero until it is fitted, so that the stages train exactly as
/// without it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryMapConfig {
    /// Width of a member's hidden layer; 0: no map.
    pub hidden: usize,
    /// Networks fitted each from its own seed and averaged into the one map (bagging): a
    /// member learns the training texts almost by heart, and their mean places new texts better
    /// than any of them. The map's hidden layer is `members * hidden` wide.
    #[serde(default = "one")]
    pub members: usize,
    /// Passes over the training texts (every training entry and every leaf's title).
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
}

impl QueryMapConfig {
    pub fn is_off(&self) -> bool {
        self.hidden == 0
    }

    /// The fitted map's hidden layer: every member's side by side.
    pub fn width(&self) -> usize {
        self.hidden * self.members
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Cls,
    Mean,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncoderMode {
    /// Nothing of the encoder trains: codes and free text through the base, codes cached.
    Frozen,
    /// The codes' channels through the frozen base (cached); free text (index entries,
    /// queries) through one LoRA adapter set of its own, trained on the training entries.
    Query,
    /// One LoRA adapter set per channel; codes and free text encoded every step.
    Lora,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MoeConfig {
    pub num_experts: usize,
    pub top_k: usize,
    pub hidden: usize,
    pub dropout: f64,
    pub load_balance_coef: f64,
    /// Per-step change of each expert's routing bias toward an even load (0 = off; absent in
    /// configs written before it existed).
    #[serde(default)]
    pub route_bias_rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    pub temperature: f64,
    pub curvature: f64,
    /// Weight of 1 - Pearson(Lorentz distance, tree distance) over the step's code pairs.
    pub tree_weight: f64,
    /// Weight of the InfoNCE of index entries against the step's six-digit codes.
    pub query_weight: f64,
    /// The leaves each index entry is scored against in the query term, at least: the step's
    /// own and, up to this many, more (the nearest in the tree first), their points without
    /// gradients, where the codes' vectors are cached (`frozen`, `query`); 0 or absent: the
    /// step's own only.
    #[serde(default)]
    pub query_pool: usize,
    /// Weight of the entries' own contrastive term (`query` mode): each drawn entry against a
    /// second text of its code, the step's other texts the negatives (0 or absent: off).
    #[serde(default)]
    pub entry_weight: f64,
    /// Its temperature, over cosine similarities.
    #[serde(default = "default_entry_temperature")]
    pub entry_temperature: f64,
    /// `query` mode: the query and entries terms teach the text adapters only, the codes' points
    /// and the head taking none of their gradient (false or absent: they teach the head too).
    #[serde(default)]
    pub text_apart: bool,
}

fn default_entry_temperature() -> f64 {
    0.05
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    pub optimizer: OptimizerConfig,
    pub scheduler: SchedulerConfig,
    pub gradient_clip: f64,
    pub accumulate_grad_batches: usize,
    pub trainer: TrainerConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub lr: f64,
    /// The learning rate of the encoder's adapters (absent or null: `lr`); it follows the same
    /// warmup and decay.
    #[serde(default)]
    pub adapter_lr: Option<f64>,
    pub weight_decay: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub warmup_steps: usize,
    pub min_lr: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    pub max_epochs: usize,
    pub precision: Precision,
    pub val_every_n_steps: Option<usize>,
    pub patience: usize,
    /// What selects the best checkpoints and drives early stopping.
    pub monitor: Monitor,
    /// Epochs of named curriculum stages, in place of `max_epochs` for that stage
    /// (`{03_stage_hard: 2}`): a tree whose last stage needs longer than the others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_epochs: BTreeMap<String, usize>,
}

/// The compute dtype (`training.trainer.precision`): `auto` is bf16 on a GPU (f32 master
/// weights) and f32 on the CPU; `32` and `bf16` force one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// From `auto`, `bf16` or `32` (a YAML number as written, or a string).
impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(d)?;
        let text = match &value {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => format!("{other:?}"),
        };
        match text.as_str() {
            "auto" => Ok(Precision::Auto),
            "32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not one of auto, 32, bf16"
            ))),
        }
    }
}

/// A validation loss (lower is better) or a hierarchy metric over all codes (higher is better).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    Cophenetic,
    #[serde(rename = "ndcg_at_10")]
    NdcgAt10,
    #[serde(rename = "parent_at_1")]
    ParentAt1,
    NeighbourhoodMap,
}

impl Monitor {
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val_loss",
            Monitor::Cophenetic => "cophenetic",
            Monitor::NdcgAt10 => "ndcg_at_10",
            Monitor::ParentAt1 => "parent_at_1",
            Monitor::NeighbourhoodMap => "neighbourhood_map",
        }
    }

    /// Lower is better for a loss, higher for a metric.
    pub fn higher_is_better(self) -> bool {
        self != Monitor::ValLoss
    }
}

/// One curriculum stage: which (anchor, positive) pairs are trained and how their negatives are
/// drawn. Level filters are inclusive lists; distance filters are strict; None means no filter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurriculumConfig {
    /// The positives' levels, as the tree numbers them (NAICS: digits); None: no such filter.
    #[serde(default)]
    pub positive_levels: Option<Vec<u8>>,
    /// The positives' depth relative to the tree's leaves, for any tree: 0 keeps positives in
    /// its leaf band (the depth of its shallowest 5% of leaves and below), 1 one level above the
    /// band too, and so on; None: no such filter. At most one of this and `positive_levels`.
    #[serde(default)]
    pub positive_levels_above_leaves: Option<u8>,
    pub anchor_levels: Option<Vec<u8>>,
    pub positive_distance_min: Option<f64>,
    pub positive_distance_max: Option<f64>,
    pub max_positives: Option<usize>,
    pub difficulty_buckets: Vec<u8>,
    pub bucket_percentages: Vec<f64>,
    pub k_negatives: usize,
    /// Training shards drawn (`train-e000.samples`, ...), each with fresh negatives; `fit` cycles
    /// through them, one per epoch.
    pub sampled_epochs: usize,
}

/// A loaded configuration: the typed values and the resolved tree they came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub tree: Value,
}

impl Loaded {
    /// The resolved configuration as YAML, as `--print-config` shows and outputs record.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.tree).unwrap_or_default()
    }

    /// sha256 of the resolved configuration (its canonical JSON).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(serde_json::to_vec(&self.config).unwrap_or_default()).into()
    }
}

/// The model keys whose values differ between the configuration a checkpoint was made with and
/// this one, as `key: theirs (here: ours)`: why the checkpoint's weights do not fit, and what to
/// pass again.
pub fn model_differences(made_with: &Config, here: &Config) -> Vec<String> {
    fn leaves(value: &serde_json::Value, key: String, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    leaves(v, format!("{key}.{k}"), out);
                }
            }
            v => {
                out.insert(key, v.to_string());
            }
        }
    }
    let flat = |c: &Config| {
        let mut out = BTreeMap::new();
        leaves(
            &serde_json::to_value(&c.model).unwrap_or_default(),
            "model".into(),
            &mut out,
        );
        out
    };
    let (theirs, ours) = (flat(made_with), flat(here));
    let absent = || "(absent)".to_string();
    theirs
        .keys()
        .chain(ours.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (
                theirs.get(k).cloned().unwrap_or_else(absent),
                ours.get(k).cloned().unwrap_or_else(absent),
            );
            (a != b).then(|| format!("{k}: {a} (here: {b})"))
        })
        .collect()
}

/// Composes `conf_dir/config.yaml` with curriculum `curriculum` (when given) and `overrides`.
pub fn load(conf_dir: &Path, curriculum: Option<&str>, overrides: &[String]) -> Result<Loaded> {
    let root_path = conf_dir.join("config.yaml");
    let mut root = read_yaml(&root_path)
        .context("run from the repository root, or pass --conf with the folder holding config.yaml")?;
    let mut choices = default_choices(&root, &root_path)?;
    if let Some(name) = curriculum {
        set_choice(&mut choices, "curriculum", name);
    }
    let mut key_overrides = Vec::new();
    let mut profile = None;
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("override `{o}` must look like key=value"))?;
        if GROUPS.contains(&key) {
            set_choice(&mut choices, key, value);
        } else if key == PROFILE {
            profile = Some(value.to_string());
        } else {
            key_overrides.push((key.to_string(), value.to_string()));
        }
    }
    let map = root.as_mapping_mut().expect("checked by default_choices");
    map.remove("defaults");
    for (group, name) in &choices {
        map.insert(
            Value::from(group.as_str()),
            read_yaml(&group_file(conf_dir, group, name)?)?,
        );
    }
    if let Some(name) = profile {
        let path = group_file(conf_dir, PROFILE, &name)?;
        let entries = read_yaml(&path)?;
        let entries = entries
            .as_mapping()
            .with_context(|| format!("{}: expected a mapping of `key: value` overrides", path.display()))?;
        for (key, value) in entries {
            let key = key
                .as_str()
                .with_context(|| format!("{}: keys must be dotted names like data.batch_size", path.display()))?;
            set_key(&mut root, key, value.clone()).with_context(|| format!("in {}", path.display()))?;
        }
    }
    for (key, value) in key_overrides {
        let parsed =
            serde_yaml::from_str(&value).with_context(|| format!("override `{key}={value}`: not a YAML value"))?;
        set_key(&mut root, &key, parsed)?;
    }
    let curriculum_name = choices
        .iter()
        .find(|(g, _)| g == "curriculum")
        .map(|(_, n)| n.clone())
        .unwrap_or_default();
    if root.get("experiment").and_then(Value::as_str).is_none_or(str::is_empty) {
        let stage = curriculum_name.replace('/', "_");
        let experiment = match root.get("data").and_then(|d| d.get("name")).and_then(Value::as_str) {
            Some(tree) if !tree.is_empty() => format!("{tree}_{stage}"),
            _ => stage,
        };
        root.as_mapping_mut()
            .expect("mapping")
            .insert("experiment".into(), Value::from(experiment));
    }
    let mut config: Config = serde_path_to_error::deserialize(root.clone())
        .map_err(|e| anyhow!("configuration key `{}`: {}", e.path(), e.inner()))?;
    validate(&config)?;
    stage_epochs(conf_dir, &curriculum_name, &mut config, &mut root)?;
    Ok(Loaded { config, tree: root })
}

/// Applies `training.trainer.stage_epochs` to the stage being loaded, in the typed values and the
/// resolved tree alike; its keys must be stages of `conf_dir/curriculum/`.
fn stage_epochs(conf_dir: &Path, stage: &str, config: &mut Config, root: &mut Value) -> Result<()> {
    let trainer = &mut config.training.trainer;
    if trainer.stage_epochs.is_empty() {
        return Ok(());
    }
    let names = stages(conf_dir)?;
    for (name, &epochs) in &trainer.stage_epochs {
        if !names.contains(name) {
            let hint = nearest(name, &names)
                .map(|n| format!("nearest: `{n}`; "))
                .unwrap_or_default();
            bail!(
                "configuration key `training.trainer.stage_epochs.{name}`: no curriculum stage `{name}` \
                 ({hint}the stages are {names:?})"
            );
        }
        if epochs == 0 {
            bail!("configuration key `training.trainer.stage_epochs.{name}`: must be at least 1");
        }
    }
    if let Some(&epochs) = trainer.stage_epochs.get(stage) {
        trainer.max_epochs = epochs;
        set_key(root, "training.trainer.max_epochs", Value::from(epochs))?;
    }
    Ok(())
}

/// The curriculum stages `-c all` runs, in order: the files of `conf_dir/curriculum/` by name.
pub fn stages(conf_dir: &Path) -> Result<Vec<String>> {
    let dir = conf_dir.join("curriculum");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yaml").map(str::to_string))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{}: no curriculum stages (NAME.yaml files)", dir.display());
    }
    Ok(names)
}

/// The stages `-c NAME` names: every stage for `all`, else NAME alone.
pub fn selected_stages(conf_dir: &Path, curriculum: &str) -> Result<Vec<String>> {
    if curriculum == ALL_STAGES {
        stages(conf_dir)
    } else {
        Ok(vec![curriculum.to_string()])
    }
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_yaml::from_str(&text).with_context(|| format!("{}: not valid YAML", path.display()))?;
    Ok(if value.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        value
    })
}

/// The `defaults` list of config.yaml as (group, file name) pairs.
fn default_choices(root: &Value, path: &Path) -> Result<Vec<(String, String)>> {
    let bad = || {
        anyhow!(
            "{}: expected a mapping with a `defaults` list of `group: name` entries",
            path.display()
        )
    };
    let list = root
        .as_mapping()
        .and_then(|m| m.get("defaults"))
        .and_then(Value::as_sequence)
        .ok_or_else(bad)?;
    list.iter()
        .map(|entry| {
            let (k, v) = entry.as_mapping().and_then(|m| m.iter().next()).ok_or_else(bad)?;
            match (k.as_str(), v.as_str()) {
                (Some(k), Some(v)) if GROUPS.contains(&k) => Ok((k.to_string(), v.to_string())),
                _ => Err(bad()),
            }
        })
        .collect()
}

fn set_choice(choices: &mut Vec<(String, String)>, group: &str, name: &str) {
    match choices.iter_mut().find(|(g, _)| g == group) {
        Some(entry) => entry.1 = name.to_string(),
        None => choices.push((group.to_string(), name.to_string())),
    }
}

/// conf_dir/group/name.yaml, or an error naming the nearest file of that group.
fn group_file(conf_dir: &Path, group: &str, name: &str) -> Result<PathBuf> {
    let path = conf_dir.join(group).join(format!("{name}.yaml"));
    if path.is_file() {
        return Ok(path);
    }
    let options: Vec<String> = std::fs::read_dir(conf_dir.join(group))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".yaml"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    match nearest(name, &options) {
        Some(best) => bail!(
            "{} not found: no {group} named `{name}`; nearest: `{best}` (one of {options:?})",
            path.display()
        ),
        None => bail!("{} not found: the {group} group has no files", path.display()),
    }
}

/// Replaces the existing key `dotted` by `value`.
fn set_key(root: &mut Value, dotted: &str, value: Value) -> Result<()> {
    let mut all = Vec::new();
    dotted_keys(root, "", &mut all);
    let unknown = || match nearest(dotted, &all) {
        Some(best) => anyhow!("unknown configuration key `{dotted}`; nearest valid key: `{best}`"),
        None => anyhow!("unknown configuration key `{dotted}`"),
    };
    let mut node = &mut *root;
    for part in dotted.split('.') {
        node = node
            .as_mapping_mut()
            .and_then(|m| m.get_mut(part))
            .ok_or_else(unknown)?;
    }
    *node = value;
    Ok(())
}

fn dotted_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(map) = value.as_mapping() {
        for (k, v) in map {
            let key = format!("{prefix}{}", k.as_str().unwrap_or_default());
            out.push(key.clone());
            dotted_keys(v, &format!("{key}."), out);
        }
    }
}

fn nearest(word: &str, options: &[String]) -> Option<String> {
    options.iter().min_by_key(|o| strsim::levenshtein(word, o)).cloned()
}

/// Checks what types cannot: the curriculum's buckets and the ranges of a few numbers.
fn validate(c: &Config) -> Result<()> {
    let cur = &c.curriculum;
    if cur.positive_levels.is_some() && cur.positive_levels_above_leaves.is_some() {
        bail!(
            "configuration keys `curriculum.positive_levels` and `curriculum.positive_levels_above_leaves`: \
             set one of them (the other null): levels as the tree numbers them, or relative to its leaves"
        );
    }
    if cur.difficulty_buckets.len() != cur.bucket_percentages.len() {
        bail!(
            "configuration key `curriculum.bucket_percentages`: {} percentages for {} difficulty_buckets",
            cur.bucket_percentages.len(),
            cur.difficulty_buckets.len()
        );
    }
    if let Some(b) = cur.difficulty_buckets.iter().find(|b| !(1..=8).contains(*b)) {
        bail!("configuration key `curriculum.difficulty_buckets`: bucket {b} is not in 1..=8");
    }
    let mut sorted = cur.difficulty_buckets.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != cur.difficulty_buckets.len() {
        bail!("configuration key `curriculum.difficulty_buckets`: a bucket is listed twice");
    }
    let sum: f64 = cur.bucket_percentages.iter().sum();
    if cur.bucket_percentages.iter().any(|p| *p < 0.0) || (sum - 1.0).abs() > 1e-6 {
        bail!("configuration key `curriculum.bucket_percentages`: must be >= 0 and sum to 1, they sum to {sum}");
    }
    if cur.k_negatives == 0 {
        bail!("configuration key `curriculum.k_negatives`: must be at least 1");
    }
    if !c.model.query_map.is_off() && c.model.query_map.members == 0 {
        bail!("configuration key `model.query_map.members`: must be at least 1 (or model.query_map.hidden 0: no map)");
    }
    if !(0.0..1.0).contains(&c.data.validation_entries) {
        bail!(
            "configuration key `data.validation_entries`: must be in [0, 1), got {}",
            c.data.validation_entries
        );
    }
    if !(0.0..1.0).contains(&c.data.val_fraction) {
        bail!(
            "configuration key `data.val_fraction`: must be in [0, 1), got {}",
            c.data.val_fraction
        );
    }
    Ok(())
}
