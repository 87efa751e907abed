//! The transformer's `config.json`, as Hugging Face writes it, for the two architectures we run
//! (`TransformerConfig`; the YAML group `model` is `naics_common::config::ModelConfig`).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// BERT: absolute positions 0.., token types, attention.self.{query,key,value}.
    Bert,
    /// MPNet: positions offset by the padding index, a relative position bias shared by all
    /// layers, attention.attn.{q,k,v,o}.
    MpNet,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TransformerConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f32,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
}

fn default_dropout() -> f32 {
    0.1
}

fn default_buckets() -> usize {
    32
}

impl TransformerConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}: is this a model folder?", path.display()))?;
        let config: TransformerConfig =
            serde_json::from_str(&text).with_context(|| format!("{}: not a model config.json", path.display()))?;
        config.arch().with_context(|| path.display().to_string())?;
        if config.hidden_act != "gelu" {
            bail!(
                "{}: hidden_act `{}` is not supported (only gelu)",
                path.display(),
                config.hidden_act
            );
        }
        if !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            bail!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                config.hidden_size,
                config.num_attention_heads
            );
        }
        Ok(config)
    }

    pub fn arch(&self) -> Result<Arch> {
        match self.model_type.as_str() {
            "bert" => Ok(Arch::Bert),
            "mpnet" => Ok(Arch::MpNet),
            other => bail!("model_type `{other}` is not supported: expected `bert` or `mpnet`"),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
