//! Vectors the frozen base computes once and keeps: the [`VectorCache`] on disk, the sorted
//! encoding that fills it, and the progress bar long encodings show.

use super::encoder::{Encoder, in_input_order};
use super::lora::Pass;
use super::mapped::Mapped;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::config::Pooling;
use naics_common::format::hex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// A file's sha256, remembered in `memo_dir` under the file's path, size and modification time
/// (as cargo fingerprints files), so that a `search` does not read the 90 MB of the model's
/// weights and the 50 MB of a checkpoint only to find its caches.
pub fn remembered_sha256(file: &Path, memo_dir: &Path) -> Result<[u8; 32]> {
    let reading = || format!("reading {}", file.display());
    let meta = std::fs::metadata(file).with_context(reading)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = Sha256::new()
        .chain_update(
            file.canonicalize()
                .with_context(reading)?
                .as_os_str()
                .as_encoded_bytes(),
        )
        .chain_update(meta.len().to_le_bytes())
        .chain_update(modified.as_nanos().to_le_bytes())
        .finalize();
    let memo = memo_dir.join(format!("sha256-{}", &hex(&stamp)[..16]));
    if let Some(hash) = std::fs::read(&memo).ok().and_then(|b| b.try_into().ok()) {
        return Ok(hash);
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(file).with_context(reading)?, &mut hasher)?;
    let hash: [u8; 32] = hasher.finalize().into();
    naics_common::atomic::write_atomically(&memo, |tmp| Ok(std::fs::write(tmp, hash)?))?;
    Ok(hash)
}

/// A key for cached vectors of token-id rows: sha256 over each row's length and ids.
pub fn ids_key(ids: &[Vec<u32>]) -> [u8; 32] {
    let mut key = Sha256::new();
    ids.iter().for_each(|row| {
        key.update((row.len() as u32).to_le_bytes());
        row.iter().for_each(|t| key.update(t.to_le_bytes()));
    });
    key.finalize().into()
}

/// Texts are encoded in chunks of this many, sorted by length to waste little padding.
const CHUNK: usize = 64;

/// Frozen base vectors kept in `{shards_dir}/cache/{name}-{key}.safetensors`, the key hashing
/// the model's weights and what was encoded, so that a changed model or text recomputes them.
pub struct VectorCache {
    dir: PathBuf,
    weights: PathBuf,
    model: OnceLock<[u8; 32]>,
    device: Device,
}

impl VectorCache {
    pub fn new(dir: &Path, encoder: &Encoder, device: &Device) -> Self {
        VectorCache {
            dir: dir.to_path_buf(),
            weights: encoder.folder.join("model.safetensors"),
            model: OnceLock::new(),
            device: device.clone(),
        }
    }

    /// The weights' sha256, found on first use (`lora` runs never pay for it).
    fn model(&self) -> Result<[u8; 32]> {
        if let Some(hash) = self.model.get() {
            return Ok(*hash);
        }
        let hash = remembered_sha256(&self.weights, &self.dir)?;
        Ok(*self.model.get_or_init(|| hash))
    }

    pub fn get_or_compute(
        &self,
        name: &str,
        key: &[&[u8]],
        compute: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        Ok(self.lazily(name, key, compute)?.get()?.clone())
    }

    /// As [`VectorCache::get_or_compute`], but a table already cached is read only when first
    /// used: `search` and `serve` never use the codes' channel vectors (their points are cached),
    /// which for ICD-10-CM's 47,200 codes are 290 MB.
    pub fn lazily(&self, name: &str, key: &[&[u8]], compute: impl FnOnce() -> Result<Tensor>) -> Result<Lazy> {
        let lazy = Lazy {
            path: self.path(name, key)?,
            device: self.device.clone(),
            table: OnceLock::new(),
        };
        if !lazy.path.exists() {
            let table = compute()?;
            save(&lazy.path, &table)?;
            let _ = lazy.table.set(table.to_device(&self.device)?);
        }
        Ok(lazy)
    }

    /// As [`VectorCache::get_or_compute`] for a matrix, read in place from its file: what
    /// `search` scores texts against.
    pub fn mapped(&self, name: &str, key: &[&[u8]], compute: impl FnOnce() -> Result<Tensor>) -> Result<Mapped> {
        let path = self.path(name, key)?;
        if !path.exists() {
            save(&path, &compute()?.to_dtype(DType::F32)?)?;
        }
        Mapped::open(&path, "vectors")
    }

    /// The file of the table `name` under `key` (and the model's weights).
    fn path(&self, name: &str, key: &[&[u8]]) -> Result<PathBuf> {
        let mut hasher = Sha256::new();
        hasher.update(self.model()?);
        key.iter().for_each(|k| hasher.update(k));
        Ok(self
            .dir
            .join(format!("{name}-{}.safetensors", &hex(&hasher.finalize())[..16])))
    }
}

/// Writes a table as the `vectors` tensor of a safetensors file.
fn save(path: &Path, table: &Tensor) -> Result<()> {
    let tensors = HashMap::from([("vectors".to_string(), table.to_device(&Device::Cpu)?)]);
    naics_common::atomic::write_atomically(path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))
}

/// A cached table, read from its file on first use.
pub struct Lazy {
    path: PathBuf,
    device: Device,
    table: OnceLock<Tensor>,
}

impl Lazy {
    pub fn get(&self) -> Result<&Tensor> {
        if let Some(table) = self.table.get() {
            return Ok(table);
        }
        let table = read_mapped(&self.path, "vectors", &self.device)
            .with_context(|| format!("{}: no `vectors` tensor; delete it to rebuild", self.path.display()))?;
        Ok(self.table.get_or_init(|| table))
    }
}

/// One tensor of a safetensors file, read through a memory map: only the tensor's copy is new
/// memory (reading the whole file first doubled it, and zeroing those fresh pages was most of a
/// `search` on ICD-10-CM).
pub fn read_mapped(path: &Path, name: &str, device: &Device) -> Result<Tensor> {
    // SAFETY: cache files are written under a temporary name and renamed into place, never
    // rewritten in place, so the mapped bytes do not change while they are read.
    let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
    Ok(file.load(name, device)?)
}

/// A cache key of a list of texts after `prefix`: each text as its length and bytes, so that no
/// two lists give the same bytes.
pub fn texts_key(prefix: &[&[u8]], texts: &[impl AsRef<str>]) -> [u8; 32] {
    let mut key = Sha256::new();
    prefix.iter().for_each(|p| key.update(p));
    hash_texts(&mut key, texts);
    key.finalize().into()
}

/// Adds each text to `key` as its length and bytes.
pub fn hash_texts(key: &mut Sha256, texts: &[impl AsRef<str>]) {
    texts.iter().map(AsRef::as_ref).for_each(|t: &str| {
        key.update((t.len() as u64).to_le_bytes());
        key.update(t.as_bytes());
    });
}

pub fn progress(len: usize, what: &str) -> Result<ProgressBar> {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} {{eta}}"
    ))?);
    Ok(bar)
}

/// The pooled vectors [n, h] of `ids` under `pass` (the frozen base: `Pass::default()`),
/// encoded in chunks of similar length so that little padding is wasted, returned in the input
/// order. With `report`, then the tokens/s, to hold against `bench/encoder.sh`'s forward (its
/// rows have no padding).
pub fn encode_sorted(
    encoder: &Encoder,
    ids: &[&[u32]],
    pooling: Pooling,
    pass: Pass,
    bar: &ProgressBar,
    report: bool,
) -> Result<Tensor> {
    let started = Instant::now();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let calls: Vec<Vec<usize>> = order.chunks(CHUNK).map(<[usize]>::to_vec).collect();
    let table = in_input_order(ids.len(), &calls, |call| {
        let batch: Vec<Vec<u32>> = call.iter().map(|&i| ids[i].to_vec()).collect();
        let vectors = encoder
            .embed_ids(&batch, pooling, pass)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        bar.inc(call.len() as u64);
        Ok(vectors)
    })?;
    if report {
        let tokens: usize = ids.iter().map(|row| row.len()).sum();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "encoded {} texts ({tokens} tokens) in {seconds:.1} s: {:.0} tokens/s",
            ids.len(),
            tokens as f64 / seconds.max(1e-9)
        );
    }
    Ok(table)
}
