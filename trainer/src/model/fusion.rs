//! Mixture-of-Experts fusion of the concatenated channel vectors: a softmax gate over E
//! experts, each row routed through its top-k experts only (conditional computation), their
//! outputs weighted by the k gate probabilities renormalized to sum to 1.
//!
//! Balance: besides the load-balancing loss, each expert has a routing bias that is added to the
//! gate probabilities when the top-k are chosen (never to the weights) and nudged after every
//! step toward the experts that carried less than their share (auxiliary-loss-free balancing,
//! DeepSeek-V3). The loss alone, at 0.01 beside InfoNCE, let two of four experts take every row.

use super::kernels::linear;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};

struct Expert {
    up: Linear,
    down: Linear,
}

pub struct Moe {
    gate: Linear,
    /// [E] added to the gate probabilities for routing only; saved with the weights, updated by
    /// `balance` rather than by gradients.
    route_bias: Var,
    experts: Vec<Expert>,
    top_k: usize,
    dropout: f32,
}

/// The fused vectors and what the load-balancing loss needs.
pub struct MoeOutput {
    pub output: Tensor,
    /// [E] mean gate probability per expert over the rows (differentiable).
    pub importance: Tensor,
    /// [E] fraction of rows that have the expert among their top-k (sums to k).
    pub load: Vec<f32>,
    /// Rows of this forward, to weight it within a global batch.
    pub rows: usize,
}

impl Moe {
    pub fn new(
        vb: VarBuilder,
        dim: usize,
        hidden: usize,
        num_experts: usize,
        top_k: usize,
        dropout: f32,
    ) -> Result<Self> {
        if top_k == 0 || top_k > num_experts {
            candle_core::bail!("MoE top_k must be in 1..={num_experts}, got {top_k}");
        }
        let experts = (0..num_experts)
            .map(|e| {
                let vb = vb.pp(format!("expert{e}"));
                Ok(Expert {
                    up: candle_nn::linear(dim, hidden, vb.pp("up"))?,
                    down: candle_nn::linear(hidden, dim, vb.pp("down"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // A variable of the VarBuilder's map: `from_tensor` shares its storage, so updates are
        // saved and loaded with the checkpoint.
        let route_bias = Var::from_tensor(&vb.get_with_hints(num_experts, "route_bias", Init::Const(0.0))?)?;
        Ok(Moe {
            gate: candle_nn::linear(dim, num_experts, vb.pp("gate"))?,
            route_bias,
            experts,
            top_k,
            dropout,
        })
    }

    pub fn num_experts(&self) -> usize {
        self.experts.len()
    }

    /// The top-k experts of every row by probability plus routing bias (ties broken by the
    /// lower index).
    pub fn route(&self, probs: &[Vec<f32>]) -> Result<Vec<Vec<usize>>> {
        let bias = self.route_bias()?;
        Ok(probs
            .iter()
            .map(|row| {
                let score: Vec<f32> = row.iter().zip(&bias).map(|(p, b)| p + b).collect();
                let mut order: Vec<usize> = (0..row.len()).collect();
                order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
                order.truncate(self.top_k);
                order
            })
            .collect())
    }

    /// The gate and every expert [`kernels::laid_out`](super::kernels::laid_out) for a model
    /// that only infers (the experts' 50 MB of weights were copied into gemm's layout at every
    /// call: 20 ms of a server's batch of eight on ICD-10-CM).
    pub fn lay_out_for_inference(&mut self) -> Result<()> {
        self.gate = super::kernels::laid_out(&self.gate)?;
        for expert in &mut self.experts {
            expert.up = super::kernels::laid_out(&expert.up)?;
            expert.down = super::kernels::laid_out(&expert.down)?;
        }
        Ok(())
    }

    /// After a step: raises by `rate` the routing bias of every expert that carried less than
    /// the mean load of the global batch, lowers it for those above (a sign step, so the bias
    /// moves at a fixed pace whatever the loss's scale). `rate` 0 turns it off.
    pub fn balance(&self, load: &[f32], rate: f64) -> Result<()> {
        if rate == 0.0 || load.len() != self.experts.len() {
            return Ok(());
        }
        let mean = load.iter().sum::<f32>() / load.len() as f32;
        let step: Vec<f32> = load
            .iter()
            .map(|&l| rate as f32 * (mean - l).signum() * f32::from(l != mean))
            .collect();
        let bias = self.route_bias.as_tensor();
        let step = Tensor::from_vec(step, load.len(), bias.device())?.to_dtype(bias.dtype())?;
        self.route_bias.set(&(bias + step)?)
    }

    /// The routing bias, per expert (reported with the loads).
    pub fn route_bias(&self) -> Result<Vec<f32>> {
        self.route_bias.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>()
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<MoeOutput> {
        let (n, _) = x.dims2()?;
        // The composed softmax: candle's fused softmax_last_dim has no backward pass.
        let probs = candle_nn::ops::softmax(&linear(&self.gate, x)?, candle_core::D::Minus1)?;
        let chosen = self.route(&probs.to_dtype(DType::F32)?.to_vec2::<f32>()?)?;
        // Renormalized weights of the chosen experts, [n, k], differentiable through the gate.
        let picks: Vec<u32> = chosen.iter().flatten().map(|&e| e as u32).collect();
        let picks = Tensor::from_vec(picks, (n, self.top_k), x.device())?;
        let weights = probs.gather(&picks, 1)?;
        let weights = weights.broadcast_div(&weights.sum_keepdim(1)?)?.flatten_all()?;
        // Every expert's rows, then added into the output by one index_add: a chain of one per
        // expert made the backward pass zero-fill and add the output's whole gradient at each
        // link. The rows are added in the same order either way.
        let (mut rows_all, mut outputs) = (Vec::new(), Vec::new());
        let mut load = vec![0f32; self.experts.len()];
        for (e, expert) in self.experts.iter().enumerate() {
            // (row, slot) of every row that picked expert e.
            let routed: Vec<(u32, u32)> = chosen
                .iter()
                .enumerate()
                .filter_map(|(r, c)| {
                    c.iter()
                        .position(|&x| x == e)
                        .map(|slot| (r as u32, (r * self.top_k + slot) as u32))
                })
                .collect();
            load[e] = routed.len() as f32 / n.max(1) as f32;
            if routed.is_empty() {
                continue;
            }
            let rows = Tensor::from_vec(routed.iter().map(|r| r.0).collect::<Vec<_>>(), routed.len(), x.device())?;
            let slots = Tensor::from_vec(routed.iter().map(|r| r.1).collect::<Vec<_>>(), routed.len(), x.device())?;
            let hidden = linear(&expert.up, &x.index_select(&rows, 0)?)?.relu()?;
            let hidden = super::rng::dropout(&hidden, self.dropout, train)?;
            let y = linear(&expert.down, &hidden)?.broadcast_mul(&weights.index_select(&slots, 0)?.unsqueeze(1)?)?;
            rows_all.extend(routed.iter().map(|r| r.0));
            outputs.push(y);
        }
        let mut output = x.zeros_like()?;
        if !outputs.is_empty() {
            let count = rows_all.len();
            let rows_all = Tensor::from_vec(rows_all, count, x.device())?;
            output = output.index_add(&rows_all, &Tensor::cat(&outputs, 0)?, 0)?;
        }
        Ok(MoeOutput {
            output,
            importance: probs.mean(0)?,
            load,
            rows: n,
        })
    }
}

/// The fraction of rows routed to each expert over a global batch made of several forwards:
/// each forward's load weighted by its rows (sums to top_k).
pub fn global_load(parts: &[&MoeOutput]) -> Vec<f32> {
    weighted_load(parts.iter().map(|p| (p.load.as_slice(), p.rows)))
}

/// The row-weighted mean of forwards' loads, from each one's (load, rows).
pub fn weighted_load<'a>(parts: impl Iterator<Item = (&'a [f32], usize)> + Clone) -> Vec<f32> {
    let total: usize = parts.clone().map(|(_, rows)| rows).sum();
    let mut load = vec![0f32; parts.clone().next().map_or(0, |(l, _)| l.len())];
    for (part, rows) in parts {
        for (l, pl) in load.iter_mut().zip(part) {
            *l += pl * (rows as f64 / total as f64) as f32;
        }
    }
    load
}

/// Each expert's share of the routed rows (loads over top_k: sums to 1, 1/E when balanced).
pub fn shares(load: &[f32]) -> Vec<f32> {
    let total: f32 = load.iter().sum();
    load.iter().map(|l| l / total.max(f32::MIN_POSITIVE)).collect()
}

/// Load-balancing loss over a global batch made of several forwards: E x sum_e importance_e x
/// load_e, with importance and load the row-weighted means over all parts. Equals top_k when
/// the gate is uniform and the routing perfectly balanced.
pub fn load_balancing_loss(parts: &[&MoeOutput]) -> Result<Tensor> {
    let total: usize = parts.iter().map(|p| p.rows).sum();
    let load = global_load(parts);
    let experts = load.len();
    let mut importance: Option<Tensor> = None;
    for p in parts {
        let weighted = (&p.importance * (p.rows as f64 / total as f64))?;
        importance = Some(match importance {
            Some(i) => (i + weighted)?,
            None => weighted,
        });
    }
    let importance = importance.expect("at least one part");
    let load = Tensor::from_vec(load, experts, importance.device())?.to_dtype(importance.dtype())?;
    (importance * load)?.sum_all()? * experts as f64
}
