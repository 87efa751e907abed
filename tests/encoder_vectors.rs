//! The encoder against the reference libraries' test vectors (Hugging Face transformers, fp32):
//! token ids exactly, hidden states and pooled vectors within 1e-4, for every sentence.

#[path = "common/testvectors.rs"]
mod testvectors;

use candle_core::{DType, Device};
use naics_common::config::Pooling;
use naics_trainer::model::Encoder;
use naics_trainer::model::lora::Pass;
use std::path::PathBuf;
use testvectors::{TestVectors, floats};

const TOLERANCE: f32 = 1e-4;

fn load(model: &str) -> (Encoder, TestVectors) {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/models")
        .join(model);
    assert!(
        folder.join("model.safetensors").exists(),
        "fetch the model first: naics-trainer fetch-model (.ci/run does)"
    );
    let encoder = Encoder::load(&folder, 512, &Device::Cpu, DType::F32).unwrap();
    (encoder, TestVectors::load(model))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn check(model: &str, batched: &[usize]) {
    let (encoder, vectors) = load(model);
    let sentences = vectors.sentences();
    let texts = vectors.texts();
    let ids = encoder.tokenize(&texts).unwrap();
    for ((text, got), expected) in texts.iter().zip(&ids).zip(vectors.input_ids()) {
        assert_eq!(got, &expected, "token ids of {text:?}");
    }
    // Every sentence alone: last hidden states of sentence 1, [CLS] and mean vectors of all.
    let (hidden, _) = encoder.transformer.forward(&ids[..1], Pass::default()).unwrap();
    let hidden: Vec<Vec<f32>> = hidden.squeeze(0).unwrap().to_vec2().unwrap();
    let expected = vectors.0["first_sentence_hidden"].as_array().unwrap();
    assert_eq!(hidden.len(), expected.len());
    for (row, exp) in hidden.iter().zip(expected) {
        let d = max_diff(row, &floats(exp));
        assert!(d < TOLERANCE, "{model}: hidden state differs by {d}");
    }
    let mut alone = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        let cls: Vec<f32> = encoder
            .embed_ids(&ids[i..=i], Pooling::Cls, Pass::default())
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mean: Vec<f32> = encoder
            .embed_ids(&ids[i..=i], Pooling::Mean, Pass::default())
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let (dc, dm) = (max_diff(&cls, &floats(&s["cls"])), max_diff(&mean, &floats(&s["mean"])));
        assert!(
            dc < TOLERANCE && dm < TOLERANCE,
            "{model} sentence {i}: cls off by {dc}, mean by {dm}"
        );
        if s.get("st_num_tokens").is_none() {
            let norm = encoder.encode(&texts[i..=i], Pooling::Mean, true).unwrap().remove(0);
            let d = max_diff(&norm, &floats(&s["st_normalized"]));
            assert!(d < TOLERANCE, "{model} sentence {i}: normalized off by {d}");
        }
        alone.push(mean);
    }
    // Padding invariance: the same sentences in one padded batch give the same vectors.
    let batch: Vec<Vec<u32>> = batched.iter().map(|&i| ids[i].clone()).collect();
    let together: Vec<Vec<f32>> = encoder
        .embed_ids(&batch, Pooling::Mean, Pass::default())
        .unwrap()
        .to_vec2()
        .unwrap();
    for (&i, v) in batched.iter().zip(&together) {
        let d = max_diff(v, &alone[i]);
        assert!(d < 1e-5, "{model} sentence {i}: padded batch differs by {d}");
    }
}

#[test]
fn minilm_matches_the_reference() {
    check("all-MiniLM-L6-v2", &(0..12).collect::<Vec<_>>());
}

#[test]
fn mpnet_matches_the_reference() {
    check("all-mpnet-base-v2", &[0, 3, 10, 11, 5]);
}
