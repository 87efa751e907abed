//! AdamW with decoupled weight decay (Loshchilov & Hutter), gradient clipping and the learning
//! rate schedule. Written out rather than taken from candle-nn because its state (moments and
//! step) must be saved with each checkpoint for an exact `--resume`.

use crate::model::kernels;
use crate::model::query_map;
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::VarMap;
use rayon::prelude::*;
use std::collections::HashMap;

/// Floating-point operations per weight of one [`AdamW::step`]: 3 for the first moment, 4 for
/// the second, 5 for the update, 4 for the decay and the subtraction (the step's accounting).
pub const ADAMW_FLOPS: u64 = 16;

pub struct AdamW {
    params: Vec<(String, Var)>,
    /// Each parameter's learning rate over the schedule's: the adapters' scale for `lora.*`,
    /// else 1.
    lr_scale: Vec<f64>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: usize,
    pub weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl AdamW {
    /// Over every variable of `varmap` but the query map's (fitted after the stages:
    /// `train::query_map`), in name order (so that state files are stable); the encoder's
    /// adapters (`lora.*`) at `adapter_scale` times the learning rate.
    pub fn new(varmap: &VarMap, weight_decay: f64, adapter_scale: f64) -> Result<Self> {
        let mut params: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .filter(|(n, _)| !n.starts_with(query_map::VARS))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |(_, v): &(String, Var)| v.zeros_like();
        let m = params.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let v = params.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let lr_scale = params
            .iter()
            .map(|(name, _)| if name.starts_with("lora.") { adapter_scale } else { 1.0 })
            .collect();
        Ok(AdamW {
            params,
            lr_scale,
            m,
            v,
            step: 0,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// One step on `grads`, each multiplied by `grad_scale` (the clipping's factor, [`clip_scale`])
    /// in the update's own pass.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let at = |lr: f64| Update {
            grad_scale,
            beta1: self.beta1,
            beta2: self.beta2,
            correct1: 1.0 - self.beta1.powi(self.step as i32),
            correct2: 1.0 - self.beta2.powi(self.step as i32),
            eps: self.eps,
            lr,
            decay: 1.0 - lr * self.weight_decay,
        };
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let update = at(lr * self.lr_scale[i]);
            let g = g.to_dtype(var.dtype())?;
            let (w, m, v) = match update.fused(var.as_tensor(), &g, &self.m[i], &self.v[i]) {
                Some(fused) => fused?,
                None => update.composed(var.as_tensor(), &g, &self.m[i], &self.v[i])?,
            };
            (self.m[i], self.v[i]) = (m, v);
            var.set(&w)?;
        }
        Ok(())
    }

    /// Moments and step, as named tensors for a safetensors file.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out.insert("step".into(), Tensor::new(&[self.step as u32], self.m[0].device())?);
        Ok(out)
    }

    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (name, var)) in self.params.iter().enumerate() {
            let get = |key: String| {
                state
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state lacks {key}")))
            };
            self.m[i] = get(format!("m.{name}"))?
                .to_dtype(var.dtype())?
                .to_device(var.device())?;
            self.v[i] = get(format!("v.{name}"))?
                .to_dtype(var.dtype())?
                .to_device(var.device())?;
        }
        let step = state
            .get("step")
            .ok_or_else(|| candle_core::Error::Msg("optimizer state lacks step".into()))?;
        self.step = step.to_dtype(DType::U32)?.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }

    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The weights a step with `grads` updates (those with a gradient).
    pub fn weights(&self, grads: &GradStore) -> usize {
        self.params
            .iter()
            .filter(|(_, v)| grads.get(v).is_some())
            .map(|(_, v)| v.elem_count())
            .sum()
    }
}

/// One AdamW step's constants: the gradients' factor, the moments' rates and bias corrections,
/// the learning rate and the decay factor 1 - lr x weight decay.
#[derive(Debug, Clone, Copy)]
struct Update {
    grad_scale: f64,
    beta1: f64,
    beta2: f64,
    correct1: f64,
    correct2: f64,
    eps: f64,
    lr: f64,
    decay: f64,
}

impl Update {
    /// The new (weight, m, v) from the weight w, its gradient g and the moments m and v, as
    /// tensor ops (any device and dtype: eleven passes over the weights).
    fn composed(&self, w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let g = &(g * self.grad_scale)?;
        let m = ((m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let update = ((&m / self.correct1)? / ((&v / self.correct2)?.sqrt()? + self.eps)?)?;
        let w = ((w * self.decay)? - (update * self.lr)?)?;
        Ok((w, m, v))
    }

    /// The same in one parallel, vectorized pass, for contiguous f32 tensors on the CPU (None
    /// otherwise): the optimizer was a tenth of a frozen step (docs/benchmarks.md).
    fn fused(&self, w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> Option<Result<(Tensor, Tensor, Tensor)>> {
        let all = [w, g, m, v];
        if !all.iter().all(|t| kernels::applies(t) && t.is_contiguous()) {
            return None;
        }
        let guards = all.map(|t| t.storage_and_layout());
        let mut slices = Vec::with_capacity(4);
        for (storage, layout) in &guards {
            let candle_core::Storage::Cpu(cpu) = &**storage else {
                return None;
            };
            slices.push(kernels::values(cpu, layout).ok()?);
        }
        let [w_in, g, m_in, v_in] = slices[..] else { return None };
        if [g, m_in, v_in].iter().any(|s| s.len() != w_in.len()) {
            return None;
        }
        let (beta1, beta2, eps, lr) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32, self.lr as f32);
        let grad_scale = self.grad_scale as f32;
        let (rest1, rest2) = ((1.0 - self.beta1) as f32, (1.0 - self.beta2) as f32);
        let (correct1, correct2, decay) = (self.correct1 as f32, self.correct2 as f32, self.decay as f32);
        let n = w_in.len();
        // Every value is written below: the buffers are not zero-filled first.
        let (mut w_out, mut m_out, mut v_out) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        const CHUNK: usize = 16 * 1024;
        w_out.spare_capacity_mut()[..n]
            .par_chunks_mut(CHUNK)
            .zip(m_out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .zip(v_out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(chunk, ((w_out, m_out), v_out))| {
                let start = chunk * CHUNK;
                let at = start..start + w_out.len();
                let (w_in, g, m_in, v_in) = (&w_in[at.clone()], &g[at.clone()], &m_in[at.clone()], &v_in[at]);
                kernels::widest(
                    #[inline(always)]
                    || {
                        for j in 0..w_out.len() {
                            let g = g[j] * grad_scale;
                            let m = m_in[j] * beta1 + g * rest1;
                            let v = v_in[j] * beta2 + g * g * rest2;
                            let update = (m / correct1) / ((v / correct2).sqrt() + eps);
                            w_out[j].write(w_in[j] * decay - update * lr);
                            m_out[j].write(m);
                            v_out[j].write(v);
                        }
                    },
                )
            });
        drop(guards);
        // SAFETY: the loop above wrote all n values of each.
        unsafe { (w_out.set_len(n), m_out.set_len(n), v_out.set_len(n)) };
        let tensor = |values: Vec<f32>| Tensor::from_vec(values, w.shape(), w.device());
        Some(tensor(w_out).and_then(|w| Ok((w, tensor(m_out)?, tensor(v_out)?))))
    }
}

/// The global L2 norm of the gradients of `vars`, and the factor that brings it down to
/// `max_norm` (1 where it is within it, or `max_norm` is 0). The optimizer's step applies the
/// factor in its own pass ([`AdamW::step`]): scaling every gradient here was a pass of its own.
pub fn clip_scale(grads: &GradStore, vars: &[Var], max_norm: f64) -> Result<(f64, f64)> {
    let mut total = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            total += squares(g)?;
        }
    }
    let norm = total.sqrt();
    let scale = if max_norm > 0.0 && norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    };
    Ok((norm, scale))
}

/// The sum of the squares of a tensor's values, in f64. For a contiguous f32 tensor on the CPU,
/// one parallel pass that adds its blocks' sums in order (the same sum on any thread count);
/// the composed ops made an f64 copy and its square first.
fn squares(g: &Tensor) -> Result<f64> {
    if kernels::applies(g) && g.is_contiguous() {
        let (storage, layout) = g.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            let blocks: Vec<f64> = kernels::values(cpu, layout)?
                .par_chunks(16 * 1024)
                .map(|block| block.iter().map(|&x| x as f64 * x as f64).sum())
                .collect();
            return Ok(blocks.iter().sum());
        }
    }
    g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()
}

/// Linear warmup from 0 to `base` over `warmup` steps, then cosine decay to `min` at `total`.
pub fn learning_rate(step: usize, warmup: usize, total: usize, base: f64, min: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused pass gives the composed ops' values over several steps (to f32 rounding), and
    /// the same values every run.
    #[test]
    fn fused_update_matches_the_composed_ops() {
        let device = Device::Cpu;
        let randn = |scale: f32| Tensor::randn(0f32, scale, 40_000, &device).unwrap();
        let zeros = || Tensor::zeros(40_000, DType::F32, &device).unwrap();
        // (weight, m, v) after each step, both ways, from the same start.
        let mut fused = (randn(1.0), zeros(), zeros());
        let mut composed = fused.clone();
        for step in 1..=3 {
            let update = Update {
                // Clipped at the second step.
                grad_scale: if step == 2 { 0.25 } else { 1.0 },
                beta1: 0.9,
                beta2: 0.999,
                correct1: 1.0 - 0.9f64.powi(step),
                correct2: 1.0 - 0.999f64.powi(step),
                eps: 1e-8,
                lr: 1e-3,
                decay: 1.0 - 1e-3 * 0.01,
            };
            let g = randn(0.5);
            let once = update.fused(&fused.0, &g, &fused.1, &fused.2).unwrap().unwrap();
            let again = update.fused(&fused.0, &g, &fused.1, &fused.2).unwrap().unwrap();
            for (a, b) in [(&once.0, &again.0), (&once.1, &again.1), (&once.2, &again.2)] {
                assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
            }
            composed = update.composed(&composed.0, &g, &composed.1, &composed.2).unwrap();
            for (ours, want) in [(&once.0, &composed.0), (&once.1, &composed.1), (&once.2, &composed.2)] {
                let diff = crate::model::max_diff(ours, want);
                let scale: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                assert!(diff <= 1e-6 * scale, "step {step}: differs by {diff} (largest {scale})");
            }
            fused = once;
        }
        // Not for other dtypes: the composed ops run there.
        let w64 = fused.0.to_dtype(DType::F64).unwrap();
        let update = Update {
            grad_scale: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            correct1: 0.1,
            correct2: 0.001,
            eps: 1e-8,
            lr: 1e-3,
            decay: 1.0,
        };
        assert!(update.fused(&w64, &w64, &w64, &w64).is_none());
    }

    /// The norm over every gradient, by hand: 3-4-12 makes 13 (in f32 and in f64); clipped to
    /// 1 the factor is 1 / 13, within the limit 1.
    #[test]
    fn the_clipping_factor_brings_the_norm_to_the_limit() {
        let device = Device::Cpu;
        let a = Var::from_tensor(&Tensor::zeros(2, DType::F32, &device).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::zeros(1, DType::F64, &device).unwrap()).unwrap();
        let unused = Var::from_tensor(&Tensor::zeros(1, DType::F32, &device).unwrap()).unwrap();
        let loss = ((a.as_tensor() * &Tensor::new(&[3f32, 4.], &device).unwrap())
            .unwrap()
            .sum_all()
            .unwrap())
        .to_dtype(DType::F64)
        .unwrap();
        let loss = (loss + (b.as_tensor() * 12.0).unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let vars = [a, b, unused];
        let (norm, scale) = clip_scale(&grads, &vars, 1.0).unwrap();
        assert!(
            (norm - 13.0).abs() < 1e-9 && (scale - 1.0 / (13.0 + 1e-6)).abs() < 1e-12,
            "{norm} {scale}"
        );
        assert_eq!(clip_scale(&grads, &vars, 20.0).unwrap(), (norm, 1.0));
        assert_eq!(clip_scale(&grads, &vars, 0.0).unwrap(), (norm, 1.0));
    }
}
