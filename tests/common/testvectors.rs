//! The reference test vectors, `tests/fixtures/testvectors/{model}.json` (Hugging Face
//! transformers, fp32; see the README there): sentences with their token ids and vectors. Read
//! by the trainer's encoder tests and the pipeline's tokenizer tests alike.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

pub struct TestVectors(pub Value);

impl TestVectors {
    /// The vectors of `model` (`all-MiniLM-L6-v2`, `all-mpnet-base-v2`).
    pub fn load(model: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/testvectors")
            .join(format!("{model}.json"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TestVectors(serde_json::from_slice(&bytes).unwrap())
    }

    pub fn sentences(&self) -> &Vec<Value> {
        self.0["sentences"].as_array().unwrap()
    }

    pub fn texts(&self) -> Vec<String> {
        self.sentences()
            .iter()
            .map(|s| s["text"].as_str().unwrap().to_string())
            .collect()
    }

    /// The reference tokenizer's ids of every sentence.
    pub fn input_ids(&self) -> Vec<Vec<u32>> {
        self.sentences()
            .iter()
            .map(|s| {
                s["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect()
    }
}

/// A JSON array of numbers as f32s.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}
