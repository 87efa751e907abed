//! The kernels' instruction-set paths (`kernels::force`, `NAICS_ISA`), the matrix products'
//! (gemm's AVX-512, AVX2 + FMA and scalar paths) included: each path this CPU has gives the
//! default path's results within the kernels' tolerance, and is bit-identical from run to run,
//! as is a frozen training step (MoE with dropout, head, backward, AdamW). One test function:
//! forcing a path is process-wide.

use candle_core::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder, VarMap};
use naics_common::config::{LossConfig, MoeConfig};
use naics_trainer::model::head::Head;
use naics_trainer::model::kernels::{self, Isa};
use naics_trainer::model::{frozen, lorentz, rng};
use naics_trainer::train::optim::AdamW;

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Every kernel on fixed inputs, by name.
fn kernel_outputs(inputs: &[Tensor]) -> Vec<(&'static str, Vec<f32>)> {
    let [x, g, q, k_t, bias, wide, tall] = inputs else {
        unreachable!()
    };
    let p = candle_nn::ops::softmax_last_dim(x).unwrap();
    let layer = LayerNorm::new(
        Tensor::arange(0f32, 48.0, &Device::Cpu)
            .unwrap()
            .affine(1.0 / 48.0, 0.5)
            .unwrap(),
        Tensor::arange(0f32, 48.0, &Device::Cpu)
            .unwrap()
            .affine(0.2 / 48.0, -0.1)
            .unwrap(),
        1e-12,
    );
    rng::seed(7);
    vec![
        ("gelu", values(&frozen::gelu(x).unwrap())),
        ("gelu_grad", values(&frozen::gelu_grad(x, g).unwrap())),
        ("softmax_grad", values(&frozen::softmax_grad(&p, g).unwrap())),
        (
            "layer_norm_grad",
            values(&frozen::layer_norm_grad(&layer, x, g).unwrap()),
        ),
        (
            "attention_probs",
            values(&frozen::attention_probs(q, k_t, bias, 0.25).unwrap()),
        ),
        ("batch_matmul", values(&frozen::batch_matmul(q, k_t, 0.25).unwrap())),
        // Past gemm's blocking, split across threads; and a transposed operand.
        ("matmul", values(&kernels::matmul(wide, tall).unwrap())),
        (
            "matmul_transposed",
            values(&kernels::matmul(&tall.t().unwrap(), &wide.t().unwrap()).unwrap()),
        ),
        (
            "linear",
            values(
                &kernels::linear(
                    &Linear::new(tall.t().unwrap(), None),
                    &x.narrow(2, 0, 40).unwrap().repeat((1, 1, 5)).unwrap(),
                )
                .unwrap(),
            ),
        ),
        ("dropout", values(&rng::dropout(x, 0.1, true).unwrap())),
        ("lorentz_distances", {
            let points = lorentz::exp_map0(&tall.affine(0.1, 0.0).unwrap(), 1.0).unwrap();
            let queries = points.narrow(0, 0, 20).unwrap();
            lorentz::distance_rows(&queries, &points, 1.0).unwrap().concat()
        }),
    ]
}

/// One frozen step from a fixed seed: the head on fixed channel vectors (dropout on), a loss,
/// its gradients and an AdamW update; the updated weights, in name order.
fn frozen_step(channels: &Tensor) -> Vec<f32> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let moe = MoeConfig {
        num_experts: 4,
        top_k: 2,
        hidden: 64,
        dropout: 0.1,
        load_balance_coef: 0.01,
        route_bias_rate: 0.01,
    };
    let loss = LossConfig {
        temperature: 0.1,
        curvature: 1.0,
        tree_weight: 0.0,
        query_weight: 0.0,
        query_pool: 0,
        entry_weight: 0.0,
        entry_temperature: 0.05,
        text_apart: false,
    };
    let head = Head::new(vb, channels.dim(1).unwrap(), &moe, 16, &loss, 0, 0).unwrap();
    rng::seed(11);
    rng::init(&varmap, &[]).unwrap();
    let out = head.forward(channels, true).unwrap();
    let objective = out.points.sqr().unwrap().mean_all().unwrap();
    let grads = objective.backward().unwrap();
    let mut optimizer = AdamW::new(&varmap, 0.01, 1.0).unwrap();
    optimizer.step(&grads, 1e-3, 1.0).unwrap();
    let mut vars: Vec<_> = varmap.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.iter().flat_map(|(_, v)| values(v.as_tensor())).collect()
}

#[test]
fn every_instruction_set_path_agrees_and_repeats_bit_for_bit() {
    let device = Device::Cpu;
    let inputs = vec![
        Tensor::randn(0f32, 2.0, (3, 5, 48), &device).unwrap(),
        Tensor::randn(0f32, 1.0, (3, 5, 48), &device).unwrap(),
        Tensor::randn(0f32, 1.0, (2, 4, 37, 32), &device).unwrap(),
        Tensor::randn(0f32, 1.0, (2, 4, 32, 37), &device).unwrap(),
        Tensor::randn(0f32, 1.0, (2, 1, 1, 37), &device).unwrap(),
        Tensor::randn(0f32, 1.0, (130, 200), &device).unwrap(),
        Tensor::randn(0f32, 1.0, (200, 70), &device).unwrap(),
    ];
    let channels = Tensor::randn(0f32, 1.0, (24, 32), &device).unwrap();
    kernels::force(None);
    let reference = kernel_outputs(&inputs);
    let reference_step = frozen_step(&channels);
    let detected = Isa::detected();
    let mut tried = Vec::new();
    let mut narrowest = None;
    for isa in Isa::ALL.into_iter().filter(|&i| i <= detected) {
        kernels::force(Some(isa));
        assert_eq!(kernels::isa(), isa);
        let first = kernel_outputs(&inputs);
        assert_eq!(first, kernel_outputs(&inputs), "{} differs run to run", isa.name());
        for ((name, got), (_, want)) in first.iter().zip(&reference) {
            let worst = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            // The element-wise kernels' tolerance; a product's rounding grows with its length
            // (FMA against separate multiply and add): 1e-6 per term, 200 terms here.
            let tolerance = if name.contains("matmul") || *name == "linear" {
                2e-4
            } else {
                1e-5
            };
            assert!(
                worst <= tolerance,
                "{name} on {}: off by {worst} from the default path",
                isa.name()
            );
        }
        let step = frozen_step(&channels);
        assert_eq!(step, frozen_step(&channels), "a frozen step on {}", isa.name());
        let worst = step
            .iter()
            .zip(&reference_step)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4,
            "a frozen step on {} moves weights {worst} away from the default path's",
            isa.name()
        );
        narrowest.get_or_insert(first);
        tried.push(isa.name());
    }
    // The switch takes effect: the baseline path (scalar products, no FMA) rounds differently
    // from the widest one somewhere.
    if detected > Isa::Baseline {
        assert_ne!(
            narrowest.unwrap(),
            reference,
            "forcing the baseline path changed nothing"
        );
    }
    // A path wider than the CPU's is capped at the CPU's.
    kernels::force(Some(Isa::Avx512));
    assert_eq!(kernels::isa(), detected);
    kernels::force(None);
    println!("paths checked: {tried:?} (detected {})", detected.name());
}
