//! Where the time goes: the matrix products' operations and time over the process (counted by
//! `model::kernels::product`), and a training step's wall time per named part (the MoE, the
//! head's projection, each loss term, the backward pass, the optimizer) with the products run
//! within it. `fit` records its steps and writes the sums beside its metrics (`step_time.json`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The products' work: calls, floating-point operations (2 m n k per product) and seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub calls: u64,
    pub flops: u64,
    pub seconds: f64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, more: Counters) {
        self.calls += more.calls;
        self.flops += more.flops;
        self.seconds += more.seconds;
    }
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, earlier: Counters) -> Counters {
        Counters {
            calls: self.calls - earlier.calls,
            flops: self.flops - earlier.flops,
            seconds: self.seconds - earlier.seconds,
        }
    }
}

static CALLS: AtomicU64 = AtomicU64::new(0);
static FLOPS: AtomicU64 = AtomicU64::new(0);
static NANOS: AtomicU64 = AtomicU64::new(0);

/// Adds one product to the process's counters.
pub fn count_product(flops: u64, spent: Duration) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    FLOPS.fetch_add(flops, Ordering::Relaxed);
    NANOS.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
}

/// The products' work so far in this process (take two and subtract for a span).
pub fn counters() -> Counters {
    Counters {
        calls: CALLS.load(Ordering::Relaxed),
        flops: FLOPS.load(Ordering::Relaxed),
        seconds: NANOS.load(Ordering::Relaxed) as f64 * 1e-9,
    }
}

/// One part's sums over the steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Part {
    pub seconds: f64,
    /// The products run inside the part.
    pub products: Counters,
    /// Operations outside the products, where the caller states them (the optimizer's).
    pub other_flops: u64,
}

/// The parts in first-seen order, and whether they are being recorded.
#[derive(Default)]
struct Recording {
    on: bool,
    parts: Vec<(&'static str, Part)>,
}

thread_local! {
    static RECORDING: RefCell<Recording> = RefCell::new(Recording::default());
}

/// Starts or pauses recording on this thread (`fit` records its steps, not its validation).
pub fn recording(on: bool) {
    RECORDING.with(|r| r.borrow_mut().on = on);
}

/// What was recorded so far, emptied.
pub fn take() -> Vec<(&'static str, Part)> {
    RECORDING.with(|r| std::mem::take(&mut r.borrow_mut().parts))
}

/// Runs `work`, adding its wall time and products to `part` when recording. Parts may nest, an
/// outer part's time then including the inner ones' (`fit`'s parts are disjoint).
pub fn time<R>(part: &'static str, work: impl FnOnce() -> R) -> R {
    if !RECORDING.with(|r| r.borrow().on) {
        return work();
    }
    let (started, before) = (Instant::now(), counters());
    let out = work();
    let spent = Part {
        seconds: started.elapsed().as_secs_f64(),
        products: counters() - before,
        other_flops: 0,
    };
    add(part, spent);
    out
}

/// Adds operations done outside the products to `part` (when recording).
pub fn add_flops(part: &'static str, flops: u64) {
    add(
        part,
        Part {
            other_flops: flops,
            ..Part::default()
        },
    );
}

fn add(part: &'static str, spent: Part) {
    RECORDING.with(|r| {
        let mut recording = r.borrow_mut();
        if !recording.on {
            return;
        }
        let parts = &mut recording.parts;
        let index = match parts.iter().position(|(name, _)| *name == part) {
            Some(i) => i,
            None => {
                parts.push((part, Part::default()));
                parts.len() - 1
            }
        };
        let sum = &mut parts[index].1;
        sum.seconds += spent.seconds;
        sum.products += spent.products;
        sum.other_flops += spent.other_flops;
    });
}

/// A fit's steps: how many and their wall time, to write with the parts recorded in them.
#[derive(Debug, Default)]
pub struct Steps {
    count: usize,
    seconds: f64,
}

impl Steps {
    pub fn add(&mut self, step: Duration) {
        self.count += 1;
        self.seconds += step.as_secs_f64();
    }

    /// `step_time.json`: per step, each part's seconds and share of the step, its products'
    /// GFLOP and GFLOP/s, its other stated GFLOP, and the share of its time outside products;
    /// `unaccounted` is the step's time in no part.
    pub fn write(&self, path: &std::path::Path, parts: Vec<(&'static str, Part)>) -> anyhow::Result<()> {
        let steps = self.count.max(1) as f64;
        let per_step = self.seconds / steps;
        let in_parts: f64 = parts.iter().map(|(_, p)| p.seconds).sum::<f64>() / steps;
        let rows: Vec<serde_json::Value> = parts
            .iter()
            .map(|(name, p)| {
                serde_json::json!({
                    "part": name,
                    "seconds": p.seconds / steps,
                    "share": p.seconds / self.seconds.max(1e-12),
                    "product_gflop": p.products.flops as f64 / steps / 1e9,
                    "product_gflops": p.products.flops as f64 / p.products.seconds.max(1e-12) / 1e9,
                    "other_gflop": p.other_flops as f64 / steps / 1e9,
                    "outside_products": 1.0 - p.products.seconds / p.seconds.max(1e-12),
                })
            })
            .collect();
        let products: f64 = parts.iter().map(|(_, p)| p.products.seconds).sum();
        let json = serde_json::json!({
            "steps": self.count,
            "seconds_per_step": per_step,
            "outside_products": 1.0 - products / self.seconds.max(1e-12),
            "unaccounted": per_step - in_parts,
            "parts": rows,
        });
        naics_common::atomic::write_json(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Only while recording; a part's products are counted in it, and nested parts in both.
    #[test]
    fn records_parts_and_their_products() {
        let a = Tensor::ones((8, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
        time("ignored", || ());
        recording(true);
        time("outer", || {
            time("inner", || {
                a.apply_op2_no_bwd(&a.t().unwrap(), &crate::model::kernels::Matmul)
                    .unwrap()
            });
        });
        add_flops("outer", 7);
        recording(false);
        time("ignored", || ());
        let parts = take();
        let names: Vec<_> = parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["inner", "outer"]);
        for (_, part) in &parts {
            assert_eq!(part.products.flops, 2 * 8 * 16 * 8);
            assert!(part.seconds >= part.products.seconds);
        }
        assert_eq!(parts[1].1.other_flops, 7);
        assert!(take().is_empty());
    }
}
