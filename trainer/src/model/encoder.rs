//! The text encoder: a pretrained BERT or MPNet from a Hugging Face model folder, with one LoRA
//! adapter set per channel over ONE shared frozen base (the base weights are memory-mapped once;
//! adapters are small trainable tensors of their own).

use super::config::TransformerConfig;
use super::lora::Pass;
use super::transformer::{self, Transformer};
use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use naics_common::config::{LoraConfig, Pooling};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The files a model folder must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

pub struct Encoder {
    pub transformer: Transformer,
    pub tokenizer: Tokenizer,
    /// sha256 of `tokenizer.json`, read once: shards and token caches name the tokenizer they
    /// were made with, and are checked against it.
    pub tokenizer_sha256: [u8; 32],
    pub folder: PathBuf,
}

/// One vector per row of the last hidden states [b, t, h] (mask [b, t]).
pub fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    match pooling {
        Pooling::Cls => transformer::cls(hidden),
        Pooling::Mean => transformer::mean(hidden, mask),
    }
}

/// What to run when a model folder is incomplete.
fn fix_hint(folder: &Path) -> String {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let which = if name.contains("mpnet") { "mpnet" } else { "minilm" };
    format!(
        "fetch it with `naics-trainer fetch-model {which} --dir {}`",
        folder.display()
    )
}

impl Encoder {
    /// Loads `folder` (config.json, model.safetensors, tokenizer.json), truncating at `max_length`.
    pub fn load(folder: &Path, max_length: usize, device: &Device, dtype: DType) -> Result<Encoder> {
        for file in MODEL_FILES {
            if !folder.join(file).is_file() {
                bail!("{}: missing; {}", folder.join(file).display(), fix_hint(folder));
            }
        }
        let config = TransformerConfig::from_file(&folder.join("config.json"))?;
        let weights = folder.join("model.safetensors");
        // Safety: the weights file is only read; it must not be modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], dtype, device) }
            .with_context(|| format!("{}: not a safetensors file; {}", weights.display(), fix_hint(folder)))?;
        let transformer = Transformer::load(vb, &config)
            .with_context(|| format!("{}: weights do not fit config.json", weights.display()))?;
        let (tokenizer, tokenizer_sha256) =
            naics_common::tokenizer::load_tokenizer(&folder.join("tokenizer.json"), max_length)?;
        Ok(Encoder {
            transformer,
            tokenizer,
            tokenizer_sha256,
            folder: folder.to_path_buf(),
        })
    }

    /// Adds one LoRA adapter set per name on the products `lora.targets` names (of
    /// [`transformer::TARGETS`]) in every layer (set i is `Pass::channel` i), their parameters
    /// created in `varmap` as `lora.layer{i}.{target}.{name}.{a|b}`.
    pub fn add_lora(&mut self, varmap: &VarMap, names: &[String], lora: &LoraConfig) -> Result<()> {
        for t in &lora.targets {
            if !transformer::TARGETS.contains(&t.as_str()) {
                bail!(
                    "model.lora.targets: `{t}` is not a product of a layer: expected some of {}",
                    transformer::TARGETS.join(", ")
                );
            }
        }
        let device = self.transformer.device().clone();
        // f32 master weights under a bf16 or f32 base; f64 under an f64 base (gradient checks).
        let master = if self.transformer.dtype() == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let vb = VarBuilder::from_varmap(varmap, master, &device).pp("lora");
        for (i, layer) in self.transformer.layers.iter_mut().enumerate() {
            let vb = vb.pp(format!("layer{i}"));
            for (target, product) in layer.projections_mut() {
                if lora.targets.iter().any(|t| t == target) {
                    product.add_adapters(&vb.pp(target), names, lora.r, lora.alpha, lora.dropout as f32)?;
                }
            }
        }
        Ok(())
    }

    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        naics_common::tokenizer::encode(&self.tokenizer, texts)
    }

    /// Pooled vectors [b, hidden] of token-id rows (padded per batch).
    pub fn embed_ids(&self, ids: &[Vec<u32>], pooling: Pooling, pass: Pass) -> Result<Tensor> {
        let (hidden, mask) = self.transformer.forward(ids, pass)?;
        Ok(pool(&hidden, &mask, pooling)?)
    }

    /// sentence-transformers' `encode`: texts -> vectors, optionally L2-normalized.
    pub fn encode(&self, texts: &[String], pooling: Pooling, normalize: bool) -> Result<Vec<Vec<f32>>> {
        let mut vectors = self.embed_ids(&self.tokenize(texts)?, pooling, Pass::default())?;
        if normalize {
            vectors = transformer::normalize(&vectors)?;
        }
        Ok(vectors.to_dtype(DType::F32)?.to_vec2()?)
    }
}

/// Runs `encode` on each call (positions into n inputs, one encoder pass each) and returns the
/// n rows in input order.
pub fn in_input_order(
    n: usize,
    calls: &[Vec<usize>],
    mut encode: impl FnMut(&[usize]) -> Result<Tensor>,
) -> Result<Tensor> {
    let parts = calls.iter().map(|call| encode(call)).collect::<Result<Vec<_>>>()?;
    let mut inverse = vec![0u32; n];
    for (k, &i) in calls.iter().flatten().enumerate() {
        inverse[i] = k as u32;
    }
    let all = Tensor::cat(&parts, 0)?.contiguous()?;
    Ok(all.index_select(&Tensor::from_vec(inverse, n, all.device())?, 0)?)
}
