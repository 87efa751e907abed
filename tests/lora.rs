//! LoRA: zero-init identity, save/load round trip, merge equivalence, finite-difference
//! gradients on a tiny random model, and clear errors for broken model folders.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use naics_common::config::{LoraConfig, Pooling};
use naics_trainer::model::lora::{Pass, numbered};
use naics_trainer::model::transformer::TARGETS;
use naics_trainer::model::{Encoder, pool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lora_config() -> LoraConfig {
    LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.1,
        targets: vec!["query".into(), "value".into()],
    }
}

/// Adapters on all six products of each layer.
fn lora_everywhere() -> LoraConfig {
    LoraConfig {
        targets: TARGETS.iter().map(|t| t.to_string()).collect(),
        ..lora_config()
    }
}

/// A random 2-layer BERT (hidden 8, 2 heads) in the Hugging Face layout, in `dir`.
fn tiny_bert(dir: &Path, dtype: DType, model_type: &str, bad_shape: bool) {
    let (h, inter, vocab, pos) = (8, 16, 30522, 64);
    let config = serde_json::json!({
        "model_type": model_type, "vocab_size": vocab, "hidden_size": h, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": inter, "hidden_act": "gelu",
        "max_position_embeddings": pos, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let dev = Device::Cpu;
    let rand = |shape: &[usize]| Tensor::randn(0f32, 0.5, shape, &dev).unwrap().to_dtype(dtype).unwrap();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert("embeddings.word_embeddings.weight".into(), rand(&[vocab, h]));
    t.insert("embeddings.position_embeddings.weight".into(), rand(&[pos, h]));
    t.insert("embeddings.token_type_embeddings.weight".into(), rand(&[2, h]));
    t.insert("embeddings.LayerNorm.weight".into(), rand(&[h]));
    t.insert("embeddings.LayerNorm.bias".into(), rand(&[h]));
    for l in 0..2 {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, if bad_shape { h + 1 } else { h }),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            t.insert(format!("{p}.{name}.weight"), rand(&[out, inp]));
            t.insert(format!("{p}.{name}.bias"), rand(&[out]));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.insert(format!("{p}.{norm}.weight"), rand(&[h]));
            t.insert(format!("{p}.{norm}.bias"), rand(&[h]));
        }
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        repo().join("data/models/all-MiniLM-L6-v2/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
}

fn ids() -> Vec<Vec<u32>> {
    vec![vec![101, 2054, 2003, 1037, 102], vec![101, 7592, 102]]
}

fn pooled(encoder: &Encoder, channel: Option<usize>) -> Vec<Vec<f32>> {
    let pass = Pass { channel, train: false };
    encoder
        .embed_ids(&ids(), Pooling::Mean, pass)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2()
        .unwrap()
}

/// Sets every B matrix to random values, so that the adapters do something.
fn randomize_b(varmap: &VarMap) {
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name.ends_with(".b") {
            let t = Tensor::randn(0f32, 0.3, var.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(var.dtype())
                .unwrap();
            var.set(&t).unwrap();
        }
    }
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn untrained_adapters_change_nothing_and_four_channels_share_one_base() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path(), DType::F32, "bert", false);
    let mut encoder = Encoder::load(dir.path(), 128, &Device::Cpu, DType::F32).unwrap();
    let base = pooled(&encoder, None);
    let varmap = VarMap::new();
    encoder.add_lora(&varmap, &numbered(4), &lora_config()).unwrap();
    // 2 layers x (query, value) x 4 channels x (A, B).
    assert_eq!(varmap.all_vars().len(), 32);
    // Equal up to rounding: with an adapter active, the differentiable (composed) LayerNorm and
    // softmax run instead of the fused kernels.
    for c in 0..4 {
        let d = max_diff(&pooled(&encoder, Some(c)), &base);
        assert!(d < 1e-5, "channel {c} differs by {d}");
    }
    randomize_b(&varmap);
    let (c0, c1) = (pooled(&encoder, Some(0)), pooled(&encoder, Some(1)));
    assert!(
        max_diff(&c0, &base) > 1e-3 && max_diff(&c0, &c1) > 1e-3,
        "channels have their own adapters"
    );
    assert_eq!(
        max_diff(&pooled(&encoder, None), &base),
        0.0,
        "the base itself is untouched"
    );
}

#[test]
fn adapters_round_trip_through_safetensors_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path(), DType::F32, "bert", false);
    let mut encoder = Encoder::load(dir.path(), 128, &Device::Cpu, DType::F32).unwrap();
    let varmap = VarMap::new();
    encoder.add_lora(&varmap, &numbered(4), &lora_everywhere()).unwrap();
    randomize_b(&varmap);
    let adapted = pooled(&encoder, Some(2));
    let file = dir.path().join("adapters.safetensors");
    varmap.save(&file).unwrap();

    let mut reloaded = Encoder::load(dir.path(), 128, &Device::Cpu, DType::F32).unwrap();
    let misspelt = LoraConfig {
        targets: vec!["query".into(), "dense".into()],
        ..lora_config()
    };
    let err = reloaded
        .add_lora(&VarMap::new(), &numbered(4), &misspelt)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`dense`") && err.contains("attention_output"), "{err}");
    let mut varmap2 = VarMap::new();
    reloaded.add_lora(&varmap2, &numbered(4), &lora_everywhere()).unwrap();
    assert!(max_diff(&pooled(&reloaded, Some(2)), &adapted) > 1e-3);
    varmap2.load(&file).unwrap();
    assert_eq!(max_diff(&pooled(&reloaded, Some(2)), &adapted), 0.0);

    // Folded for inference: each adapter's pass one product, the same vectors to rounding, the
    // base untouched.
    let base = pooled(&reloaded, None);
    reloaded.transformer.fold_adapters().unwrap();
    assert!(
        reloaded
            .transformer
            .layers
            .iter_mut()
            .all(|l| l.projections_mut().iter().all(|(_, p)| p.folded.len() == 4))
    );
    let folded = max_diff(&pooled(&reloaded, Some(2)), &adapted);
    assert!(folded < 1e-5, "folded differs by {folded}");
    assert_eq!(max_diff(&pooled(&reloaded, None), &base), 0.0);

    reloaded.transformer.merge_adapters(2).unwrap();
    let merged = pooled(&reloaded, None);
    assert!(
        max_diff(&merged, &adapted) < 1e-5,
        "merged differs by {}",
        max_diff(&merged, &adapted)
    );
}

/// In f64 (adapters then take the base's f64), central differences with a step of 1e-6: checks
/// the hand-written backward pass (`Transformer::backprop`: the frozen layers' input gradients
/// and LoRA's on all six products), with and without activation checkpointing.
#[test]
fn lora_gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bert(dir.path(), DType::F64, "bert", false);
    let mut encoder = Encoder::load(dir.path(), 128, &Device::Cpu, DType::F64).unwrap();
    let varmap = VarMap::new();
    encoder.add_lora(&varmap, &numbered(2), &lora_everywhere()).unwrap();
    randomize_b(&varmap);
    let probe = Tensor::randn(0f64, 1.0, (2, 8), &Device::Cpu).unwrap();
    let pass = Pass {
        channel: Some(1),
        train: false,
    };
    // loss = sum((v * probe)^2), so dloss/dv = 2 v probe^2.
    let loss = |enc: &Encoder| -> f64 {
        let v = enc.embed_ids(&ids(), Pooling::Mean, pass).unwrap();
        (v * &probe)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let gradients = |checkpoint: bool| -> GradStore {
        let v = encoder.embed_ids(&ids(), Pooling::Mean, pass).unwrap();
        let grad = ((v * 2.0).unwrap() * probe.sqr().unwrap()).unwrap();
        let mut grads = GradStore::default();
        let mean = |hidden: &Tensor, mask: &Tensor| pool(hidden, mask, Pooling::Mean);
        encoder
            .transformer
            .backprop(&ids(), 0, pass, checkpoint, mean, &grad, &mut grads)
            .unwrap();
        grads
    };
    let (grads, checkpointed) = (gradients(false), gradients(true));
    let vars: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        let mut v: Vec<_> = data
            .iter()
            .filter(|(n, _)| n.contains(".1."))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(vars.len(), 24, "channel 1: 2 layers x 6 products x (A, B)");
    let eps = 1e-6;
    let mut checked = 0;
    for (name, var) in &vars {
        let grad = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name}"));
        let analytic: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let again: Vec<f64> = checkpointed.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(analytic, again, "{name}: checkpointing changed the gradient");
        assert!(analytic.iter().any(|g| g.abs() > 1e-6), "{name} got no real gradient");
        let original: Vec<f64> = var.flatten_all().unwrap().to_vec1().unwrap();
        for &k in &[0, original.len() / 3, original.len() / 2, original.len() - 1] {
            let at = |delta: f64| {
                let mut values = original.clone();
                values[k] += delta;
                var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(&encoder)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(original.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            // 1e-3 relative (the differences seen stay below 2e-4; a wrong gradient is off by far
            // more), plus the central differences' own rounding noise (about 1e-9 absolute).
            let tolerance = 1e-3 * analytic[k].abs().max(numeric.abs()) + 1e-8;
            assert!(
                (analytic[k] - numeric).abs() < tolerance,
                "{name}[{k}]: analytic {} vs numeric {numeric}",
                analytic[k]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 96);
    // Channel 0's adapters got no gradient from a channel-1 loss.
    let data = varmap.data().lock().unwrap();
    let zero_a = data.iter().find(|(n, _)| n.contains(".0.a")).unwrap().1;
    assert!(grads.get(zero_a).is_none());
}

#[test]
fn broken_model_folders_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = |d: &Path| {
        format!(
            "{:#}",
            Encoder::load(d, 128, &Device::Cpu, DType::F32)
                .err()
                .expect("must fail")
        )
    };
    let e = err(dir.path());
    assert!(
        e.contains("config.json: missing") && e.contains("naics-trainer fetch-model"),
        "{e}"
    );
    tiny_bert(dir.path(), DType::F32, "roberta", false);
    let e = err(dir.path());
    assert!(e.contains("model_type `roberta` is not supported"), "{e}");
    tiny_bert(dir.path(), DType::F32, "bert", true);
    let e = err(dir.path());
    assert!(
        e.contains("weights do not fit config.json") && e.contains("attention.self.value.weight"),
        "{e}"
    );
    std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    let e = err(dir.path());
    assert!(e.contains("not a safetensors file"), "{e}");
}
