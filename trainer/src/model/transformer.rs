//! BERT and MPNet encoders: one post-LayerNorm transformer, weights loaded by name through
//! `VarBuilder` (the Hugging Face names of each architecture), LoRA on any of a layer's six
//! products (query and value by default).

use super::config::{Arch, TransformerConfig};
use super::lora::{LoraLinear, LoraTape, Pass};
use super::rng::{self, dropout, dropout_mask, masked};
use super::{frozen, kernels};
use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};

/// The Hugging Face weight names of one layer's parts, per architecture.
struct Names {
    query: &'static str,
    key: &'static str,
    value: &'static str,
    attn_out: &'static str,
    attn_norm: &'static str,
}

fn names(arch: Arch) -> Names {
    match arch {
        Arch::Bert => Names {
            query: "attention.self.query",
            key: "attention.self.key",
            value: "attention.self.value",
            attn_out: "attention.output.dense",
            attn_norm: "attention.output.LayerNorm",
        },
        Arch::MpNet => Names {
            query: "attention.attn.q",
            key: "attention.attn.k",
            value: "attention.attn.v",
            attn_out: "attention.attn.o",
            attn_norm: "attention.LayerNorm",
        },
    }
}

fn linear(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((out_dim, in_dim), "weight")?,
        Some(vb.get(out_dim, "bias")?),
    ))
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(size, "weight")?, vb.get(size, "bias")?, eps))
}

fn embedding(vb: VarBuilder, count: usize, size: usize) -> Result<Embedding> {
    Ok(Embedding::new(vb.get((count, size), "weight")?, size))
}

pub struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Option<Embedding>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, c: &TransformerConfig, arch: Arch) -> Result<Self> {
        let token_types = match arch {
            Arch::Bert => Some(embedding(
                vb.pp("token_type_embeddings"),
                c.type_vocab_size,
                c.hidden_size,
            )?),
            Arch::MpNet => None,
        };
        Ok(Embeddings {
            words: embedding(vb.pp("word_embeddings"), c.vocab_size, c.hidden_size)?,
            positions: embedding(vb.pp("position_embeddings"), c.max_position_embeddings, c.hidden_size)?,
            token_types,
            norm: layer_norm(vb.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
        })
    }

    fn forward(&self, ids: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let mut x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(positions)?)?;
        if let Some(types) = &self.token_types {
            // Single-segment input: token type 0 everywhere.
            x = x.broadcast_add(&types.forward(&Tensor::zeros(1, DType::U32, ids.device())?)?)?;
        }
        frozen::layer_norm(&self.norm, &x)
    }
}

/// A layer's products by their LoRA target names (`model.lora.targets`), in the layer's order.
pub const TARGETS: [&str; 6] = ["query", "key", "value", "attention_output", "intermediate", "output"];

pub struct Layer {
    query: LoraLinear,
    key: LoraLinear,
    value: LoraLinear,
    attn_out: LoraLinear,
    attn_norm: LayerNorm,
    ffn_in: LoraLinear,
    ffn_out: LoraLinear,
    out_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Layer {
    fn load(vb: VarBuilder, c: &TransformerConfig, arch: Arch) -> Result<Self> {
        let n = names(arch);
        let h = c.hidden_size;
        Ok(Layer {
            query: LoraLinear::frozen(linear(vb.pp(n.query), h, h)?),
            key: LoraLinear::frozen(linear(vb.pp(n.key), h, h)?),
            value: LoraLinear::frozen(linear(vb.pp(n.value), h, h)?),
            attn_out: LoraLinear::frozen(linear(vb.pp(n.attn_out), h, h)?),
            attn_norm: layer_norm(vb.pp(n.attn_norm), h, c.layer_norm_eps)?,
            ffn_in: LoraLinear::frozen(linear(vb.pp("intermediate.dense"), h, c.intermediate_size)?),
            ffn_out: LoraLinear::frozen(linear(vb.pp("output.dense"), c.intermediate_size, h)?),
            out_norm: layer_norm(vb.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
        })
    }

    /// The products named by `TARGETS`, in its order.
    pub fn projections_mut(&mut self) -> [(&'static str, &mut LoraLinear); 6] {
        let [q, k, v, o, i, f] = TARGETS;
        [
            (q, &mut self.query),
            (k, &mut self.key),
            (v, &mut self.value),
            (o, &mut self.attn_out),
            (i, &mut self.ffn_in),
            (f, &mut self.ffn_out),
        ]
    }

    /// [b, t, hidden] -> [b, heads, t, head_dim], a view (attention's products read it as is).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.heads, self.head_dim))?.transpose(1, 2)
    }

    /// Attention's scale of q kᵀ, 1/sqrt(head_dim).
    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// [b, heads, t, head_dim] -> [b, t, hidden]
    fn merge_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, t, _) = x.dims4()?;
        x.transpose(1, 2)?.reshape((b, t, self.heads * self.head_dim))
    }

    /// `bias`: [b or 1, 1 or heads, t or 1, t], the padding mask plus MPNet's position bias.
    /// Returns the output and what [`Self::backward`] needs.
    fn forward(&self, x: &Tensor, bias: &Tensor, pass: Pass, p_drop: f32) -> Result<(Tensor, Tape)> {
        let (query, query_tape) = self.query.forward(x, pass)?;
        let (key, key_tape) = self.key.forward(x, pass)?;
        let (value, value_tape) = self.value.forward(x, pass)?;
        let q = self.split_heads(&query)?;
        let k = self.split_heads(&key)?;
        let v = self.split_heads(&value)?;
        let probs = frozen::attention_probs(&q, &k.t()?, bias, self.scale())?;
        let probs_mask = dropout_mask(&probs, p_drop, pass.train)?;
        let context = self.merge_heads(&frozen::batch_matmul(&masked(&probs, probs_mask.as_ref())?, &v, 1.0)?)?;
        let (attn, attn_out_tape) = self.attn_out.forward(&context, pass)?;
        let attn_mask = dropout_mask(&attn, p_drop, pass.train)?;
        let attn_sum = (masked(&attn, attn_mask.as_ref())? + x)?;
        let attn = frozen::layer_norm(&self.attn_norm, &attn_sum)?;
        let (ffn_in, ffn_in_tape) = self.ffn_in.forward(&attn, pass)?;
        let (ffn, ffn_out_tape) = self.ffn_out.forward(&frozen::gelu(&ffn_in)?, pass)?;
        let ffn_mask = dropout_mask(&ffn, p_drop, pass.train)?;
        let out_sum = (masked(&ffn, ffn_mask.as_ref())? + &attn)?;
        let out = frozen::layer_norm(&self.out_norm, &out_sum)?;
        let tape = Tape {
            adapters: [
                query_tape,
                key_tape,
                value_tape,
                attn_out_tape,
                ffn_in_tape,
                ffn_out_tape,
            ],
            q,
            k,
            v,
            probs,
            probs_mask,
            attn_mask,
            attn_sum,
            ffn_in,
            ffn_mask,
            out_sum,
        };
        Ok((out, tape))
    }

    /// The forward pass run backwards from the output's gradient `g`: adds the adapters'
    /// gradients to `grads` and, when `input_grad`, returns the input's gradient.
    fn backward(&self, tape: &Tape, g: &Tensor, input_grad: bool, grads: &mut GradStore) -> Result<Option<Tensor>> {
        let [query, key, value, attn_out, ffn_in, ffn_out] = tape.adapters.each_ref().map(Option::as_ref);
        let g_out_sum = frozen::layer_norm_grad(&self.out_norm, &tape.out_sum, g)?;
        let g_ffn = masked(&g_out_sum, tape.ffn_mask.as_ref())?;
        let g_ffn_in = frozen::gelu_grad(&tape.ffn_in, &through(&self.ffn_out, ffn_out, &g_ffn, grads)?)?;
        let g_attn = (through(&self.ffn_in, ffn_in, &g_ffn_in, grads)? + g_out_sum)?;
        let g_attn_sum = frozen::layer_norm_grad(&self.attn_norm, &tape.attn_sum, &g_attn)?;
        let g_attn = masked(&g_attn_sum, tape.attn_mask.as_ref())?;
        let g_context = self.split_heads(&through(&self.attn_out, attn_out, &g_attn, grads)?)?;
        let dropped = masked(&tape.probs, tape.probs_mask.as_ref())?;
        let g_v = frozen::batch_matmul(&dropped.t()?, &g_context, 1.0)?;
        let g_probs = masked(
            &frozen::batch_matmul(&g_context, &tape.v.t()?, 1.0)?,
            tape.probs_mask.as_ref(),
        )?;
        let g_scores = frozen::softmax_grad(&tape.probs, &g_probs)?;
        let g_q = frozen::batch_matmul(&g_scores, &tape.k, self.scale())?;
        let g_k = frozen::batch_matmul(&g_scores.t()?, &tape.q, self.scale())?;
        let g_x_query = self
            .query
            .backward(query, &self.merge_heads(&g_q)?, input_grad, grads)?;
        let g_x_key = self.key.backward(key, &self.merge_heads(&g_k)?, input_grad, grads)?;
        let g_x_value = self
            .value
            .backward(value, &self.merge_heads(&g_v)?, input_grad, grads)?;
        let (Some(g_x_query), Some(g_x_key), Some(g_x_value)) = (g_x_query, g_x_key, g_x_value) else {
            return Ok(None);
        };
        Ok(Some((((g_attn_sum + g_x_query)? + g_x_value)? + g_x_key)?))
    }
}

/// The input gradient of a product inside a layer (always needed there), its adapter's
/// gradients added to `grads`.
fn through(layer: &LoraLinear, tape: Option<&LoraTape>, g: &Tensor, grads: &mut GradStore) -> Result<Tensor> {
    let grad = layer.backward(tape, g, true, grads)?;
    grad.ok_or_else(|| candle_core::Error::Msg("a product's input gradient was not computed".into()))
}

/// What a layer's backward pass needs from its forward pass: attention's heads (views of the
/// projections) and probabilities, the sums before each LayerNorm, the feed-forward's
/// pre-activation, the dropout masks, and the adapters' own (in `TARGETS` order).
struct Tape {
    adapters: [Option<LoraTape>; 6],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    probs_mask: Option<Tensor>,
    attn_mask: Option<Tensor>,
    attn_sum: Tensor,
    ffn_in: Tensor,
    ffn_mask: Option<Tensor>,
    out_sum: Tensor,
}

/// A forward pass kept for [`Transformer::backward`]: the last hidden states [b, t, hidden], the
/// attention mask [b, t], and per layer what its backward pass needs.
pub struct Forward {
    pub hidden: Tensor,
    pub mask: Tensor,
    bias: Tensor,
    pass: Pass,
    saved: Vec<Saved>,
}

enum Saved {
    Tape(Box<Tape>),
    /// Activation checkpointing: the layer's input and the random stream's position there.
    Input(Tensor, ([u8; 32], u128)),
}

/// MPNet's relative position bias, shared by all layers (T5-style buckets, bidirectional).
struct RelativeBias {
    table: Embedding,
    buckets: usize,
}

impl RelativeBias {
    /// The bucket of key position j seen from query position i, as Hugging Face computes it
    /// (in f32, max distance 128).
    fn bucket(relative: i64, num_buckets: usize) -> u32 {
        let half = (num_buckets / 2) as i64;
        let n = -relative;
        let mut bucket = if n < 0 { half } else { 0 };
        let n = n.abs();
        let max_exact = half / 2;
        bucket += if n < max_exact {
            n
        } else {
            let scaled =
                (n as f32 / max_exact as f32).ln() / (128.0f32 / max_exact as f32).ln() * (half - max_exact) as f32;
            (max_exact + scaled as i64).min(half - 1)
        };
        bucket as u32
    }

    /// [1, heads, t, t]
    fn forward(&self, t: usize, device: &Device) -> Result<Tensor> {
        let ids: Vec<u32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| Self::bucket(j as i64 - i as i64, self.buckets)))
            .collect();
        let ids = Tensor::from_vec(ids, (t, t), device)?;
        self.table.forward(&ids)?.permute((2, 0, 1))?.unsqueeze(0)?.contiguous()
    }
}

/// The transformer body: token ids in, last hidden states out.
pub struct Transformer {
    pub config: TransformerConfig,
    pub arch: Arch,
    embeddings: Embeddings,
    pub layers: Vec<Layer>,
    relative: Option<RelativeBias>,
    device: Device,
}

impl Transformer {
    pub fn load(vb: VarBuilder, config: &TransformerConfig) -> Result<Self> {
        let arch = config.arch().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config, arch))
            .collect::<Result<Vec<_>>>()?;
        let relative = match arch {
            Arch::Bert => None,
            Arch::MpNet => Some(RelativeBias {
                table: embedding(
                    vb.pp("encoder.relative_attention_bias"),
                    config.relative_attention_num_buckets,
                    config.num_attention_heads,
                )?,
                buckets: config.relative_attention_num_buckets,
            }),
        };
        Ok(Transformer {
            config: config.clone(),
            arch,
            embeddings: Embeddings::load(vb.pp("embeddings"), config, arch)?,
            layers,
            relative,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.embeddings.words.embeddings().dtype()
    }

    /// Position ids: 0.. for BERT; for MPNet, padding_idx + 1 + the index among non-padding
    /// tokens, and padding_idx at padding (fairseq's convention).
    fn positions(&self, ids: &[Vec<u32>], t: usize) -> Result<Tensor> {
        let pad = self.config.pad_token_id;
        let rows: Vec<u32> = match self.arch {
            Arch::Bert => ids.iter().flat_map(|_| 0..t as u32).collect(),
            Arch::MpNet => ids
                .iter()
                .flat_map(|row| {
                    let mut seen = 0;
                    (0..t).map(move |i| match row.get(i) {
                        Some(&id) if id != pad => {
                            seen += 1;
                            pad + seen
                        }
                        _ => pad,
                    })
                })
                .collect(),
        };
        Tensor::from_vec(rows, (ids.len(), t), &self.device)
    }

    /// Encodes a batch of token-id rows of different lengths, padded here to the longest.
    /// Returns the last hidden states [b, t, hidden] and the attention mask [b, t] (f32, 1 = token).
    pub fn forward(&self, ids: &[Vec<u32>], pass: Pass) -> Result<(Tensor, Tensor)> {
        self.forward_padded(ids, 0, pass)
    }

    /// [`Self::forward`] with every row padded to at least `pad_to` tokens (as a fixed-length
    /// pipeline does; benchmarks compare against it).
    pub fn forward_padded(&self, ids: &[Vec<u32>], pad_to: usize, pass: Pass) -> Result<(Tensor, Tensor)> {
        let (mut x, mask, bias) = self.embed(ids, pad_to, pass)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, pass, self.config.hidden_dropout_prob)?.0;
        }
        Ok((x, mask))
    }

    /// Adds to `grads` the gradient of sum(pool(hidden, mask) * grad) with respect to the
    /// adapters of `pass`: [`Self::forward_taped`], then [`Self::backward`].
    #[allow(clippy::too_many_arguments)]
    pub fn backprop(
        &self,
        ids: &[Vec<u32>],
        pad_to: usize,
        pass: Pass,
        checkpoint: bool,
        pool: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
        grad: &Tensor,
        grads: &mut GradStore,
    ) -> Result<()> {
        self.backward(&self.forward_taped(ids, pad_to, pass, checkpoint)?, pool, grad, grads)
    }

    /// A forward pass (rows padded to at least `pad_to`) that keeps what [`Self::backward`]
    /// needs: every layer's [`Tape`] or, with `checkpoint` (activation checkpointing), only each
    /// layer's input and the random stream's position there, for memory that does not grow with
    /// depth (the backward pass then recomputes each layer, with the same dropout masks).
    pub fn forward_taped(&self, ids: &[Vec<u32>], pad_to: usize, pass: Pass, checkpoint: bool) -> Result<Forward> {
        let p_drop = self.config.hidden_dropout_prob;
        let (mut x, mask, bias) = self.embed(ids, pad_to, pass)?;
        let mut saved = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let input = checkpoint.then(|| Saved::Input(x.clone(), rng::position()));
            let (out, tape) = layer.forward(&x, &bias, pass, p_drop)?;
            saved.push(input.unwrap_or_else(|| Saved::Tape(Box::new(tape))));
            x = out;
        }
        Ok(Forward {
            hidden: x,
            mask,
            bias,
            pass,
            saved,
        })
    }

    /// Adds to `grads` the gradient of sum(pool(hidden, mask) * grad) with respect to the
    /// adapters of `forward`'s pass: the layers' hand-written backward passes from the top down.
    pub fn backward(
        &self,
        forward: &Forward,
        pool: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
        grad: &Tensor,
        grads: &mut GradStore,
    ) -> Result<()> {
        // Recomputed layers rewind the random stream; it goes on from here afterwards.
        let resume = rng::position();
        // Pooling is cheap: candle's autograd carries `grad` to the top layer's output.
        let top = Var::from_tensor(&forward.hidden)?;
        let pooled = pool(top.as_tensor(), &forward.mask)?;
        let seeded = (pooled.to_dtype(grad.dtype())? * grad)?.sum_all()?.backward()?;
        let mut g = seeded
            .get(top.as_tensor())
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg("pooling does not depend on the hidden states".into()))?;
        for (i, (layer, saved)) in self.layers.iter().zip(&forward.saved).enumerate().rev() {
            let recomputed;
            let tape = match saved {
                Saved::Tape(tape) => tape,
                Saved::Input(input, (seed, word)) => {
                    rng::restore(*seed, *word);
                    let p_drop = self.config.hidden_dropout_prob;
                    recomputed = layer.forward(input, &forward.bias, forward.pass, p_drop)?.1;
                    &recomputed
                }
            };
            // The embeddings below the first layer are frozen: no input gradient there.
            match layer.backward(tape, &g, i > 0, grads)? {
                Some(below) => g = below,
                None => break,
            }
        }
        rng::restore(resume.0, resume.1);
        Ok(())
    }

    /// Embeddings (with dropout) of token-id rows padded to the longest (at least `pad_to`), the
    /// attention mask [b, t] (f32, 1 = token) and the attention bias.
    fn embed(&self, ids: &[Vec<u32>], pad_to: usize, pass: Pass) -> Result<(Tensor, Tensor, Tensor)> {
        let t = ids.iter().map(Vec::len).max().unwrap_or(0).max(pad_to).max(1);
        let pad = self.config.pad_token_id;
        let flat: Vec<u32> = ids
            .iter()
            .flat_map(|row| (0..t).map(|i| row.get(i).copied().unwrap_or(pad)))
            .collect();
        let mask: Vec<f32> = ids
            .iter()
            .flat_map(|row| (0..t).map(|i| if i < row.len() { 1.0 } else { 0.0 }))
            .collect();
        let input = Tensor::from_vec(flat, (ids.len(), t), &self.device)?;
        let mask = Tensor::from_vec(mask, (ids.len(), t), &self.device)?;
        let dtype = self.dtype();
        // Hugging Face's extended mask: 0 for tokens, the dtype's minimum for padding.
        let min = f32::MIN as f64;
        let mut bias = mask.affine(-min, min)?.unsqueeze(1)?.unsqueeze(1)?.to_dtype(dtype)?;
        if let Some(relative) = &self.relative {
            bias = bias.broadcast_add(&relative.forward(t, &self.device)?.to_dtype(dtype)?)?;
        }
        let x = self.embeddings.forward(&input, &self.positions(ids, t)?)?;
        Ok((dropout(&x, self.config.hidden_dropout_prob, pass.train)?, mask, bias))
    }

    /// Every linear layer [`kernels::laid_out`] for a model that only infers (19 -> 6 ms for
    /// a server's one query on ICD-10-CM).
    pub fn lay_out_for_inference(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            for (_, product) in layer.projections_mut() {
                product.base = kernels::laid_out(&product.base)?;
            }
        }
        Ok(())
    }

    /// For a model that only infers, once its adapters are loaded: every adapter folded into its
    /// layer ([`LoraLinear::fold`]).
    pub fn fold_adapters(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            for (_, product) in layer.projections_mut() {
                product.fold()?;
            }
        }
        Ok(())
    }

    /// For `merge`: replaces every adapted product of every layer by its merged version.
    pub fn merge_adapters(&mut self, channel: usize) -> Result<()> {
        for layer in &mut self.layers {
            for (_, product) in layer.projections_mut() {
                if !product.adapters.is_empty() {
                    *product = LoraLinear::frozen(product.merged(channel)?);
                }
            }
        }
        Ok(())
    }
}

/// [CLS] (first token) pooling: [b, t, h] -> [b, h].
pub fn cls(hidden: &Tensor) -> Result<Tensor> {
    hidden.narrow(1, 0, 1)?.squeeze(1)
}

/// Attention-masked mean pooling: [b, t, h], [b, t] -> [b, h].
pub fn mean(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
    sum.broadcast_div(&mask.sum(1)?.clamp(1e-9, f64::MAX)?)
}

/// L2 normalization of each row.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.clamp(1e-24, f64::MAX)?.sqrt()?)
}
