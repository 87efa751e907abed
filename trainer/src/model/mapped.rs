//! Cached tables read in place from a safetensors file's memory map. `search` and `serve` score
//! against them as they lie in the page cache: copying them into tensors (a 200,000-code tree's
//! entry vectors are 476 MB, its points 206 MB) cost fresh memory that the kernel zeroed first,
//! most of a `search`.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// A safetensors file, mapped.
pub struct MappedFile {
    map: Mmap,
    /// What errors name: the file, and what to do.
    broken: String,
    /// Where the tensors' bytes start: after the header's length (8 bytes) and the header.
    data: usize,
    metadata: safetensors::tensor::Metadata,
}

/// Where one tensor's values lie in a [`MappedFile`], checked when found.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    start: usize,
    end: usize,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<MappedFile> {
        let broken = format!(
            "{}: not a table this program wrote; delete it to rebuild",
            path.display()
        );
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        // SAFETY: cache files are written under a temporary name and renamed into place, never
        // rewritten in place, so the mapped bytes do not change while they are read.
        let map = unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let (header, metadata) = SafeTensors::read_metadata(&map).with_context(|| broken.clone())?;
        Ok(MappedFile {
            map,
            broken,
            data: 8 + header,
            metadata,
        })
    }

    /// The tensor `name` of `dtype`, and its shape.
    pub fn find(&self, name: &str, dtype: Dtype) -> Result<(Span, Vec<usize>)> {
        let info = self
            .metadata
            .info(name)
            .with_context(|| format!("{}: no `{name}` tensor", self.broken))?;
        let (start, end) = (self.data + info.data_offsets.0, self.data + info.data_offsets.1);
        let size = dtype.bitsize() / 8;
        // The map starts on a page, so a start at a multiple of the size is aligned for it.
        if info.dtype != dtype
            || end - start != info.shape.iter().product::<usize>() * size
            || end > self.map.len()
            || !start.is_multiple_of(size)
        {
            bail!(
                "{}: `{name}` is not {:?} aligned {dtype:?} values",
                self.broken,
                info.shape
            )
        }
        Ok((Span { start, end }, info.shape.clone()))
    }

    /// The values of a span [`MappedFile::find`] returned for `T`'s dtype.
    pub fn values<T: bytemuck::Pod>(&self, span: Span) -> &[T] {
        bytemuck::cast_slice(&self.map[span.start..span.end])
    }

    /// The file and what to do, for errors about its contents.
    pub fn broken(&self) -> &str {
        &self.broken
    }
}

/// A matrix of f32, read in place.
pub struct Mapped {
    file: MappedFile,
    span: Span,
    rows: usize,
    cols: usize,
}

impl Mapped {
    /// The 2-D f32 tensor `name` of the safetensors file at `path`.
    pub fn open(path: &Path, name: &str) -> Result<Mapped> {
        let file = MappedFile::open(path)?;
        let (span, shape) = file.find(name, Dtype::F32)?;
        let &[rows, cols] = shape.as_slice() else {
            bail!("{}: `{name}` has shape {shape:?}, expected a matrix", file.broken())
        };
        Ok(Mapped { file, span, rows, cols })
    }

    /// The matrix, row-major.
    pub fn values(&self) -> &[f32] {
        self.file.values(self.span)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values()[i * self.cols..(i + 1) * self.cols]
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// A tensor of the matrix (a copy, for candle's ops).
    pub fn tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(self.values(), (self.rows, self.cols), &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::{Mapped, MappedFile};
    use candle_core::{Device, Tensor};
    use safetensors::Dtype;
    use std::collections::HashMap;

    /// What candle saved reads back in place, value for value; a missing name, a vector and
    /// another dtype are errors that name the file.
    #[test]
    fn a_saved_matrix_reads_back_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let tensors = HashMap::from([
            (
                "m".to_string(),
                Tensor::from_slice(&values, (3, 4), &Device::Cpu).unwrap(),
            ),
            (
                "v".to_string(),
                Tensor::from_slice(&values[..3], 3, &Device::Cpu).unwrap(),
            ),
            (
                "i".to_string(),
                Tensor::from_slice(&[1u32, 2, 3, 4], (2, 2), &Device::Cpu).unwrap(),
            ),
        ]);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let m = Mapped::open(&path, "m").unwrap();
        assert_eq!((m.rows(), m.cols()), (3, 4));
        assert_eq!(m.values(), values.as_slice());
        assert_eq!(m.row(2), &values[8..]);
        assert_eq!(m.tensor().unwrap().to_vec2::<f32>().unwrap()[1], values[4..8].to_vec());
        let file = MappedFile::open(&path).unwrap();
        let (span, shape) = file.find("i", Dtype::U32).unwrap();
        assert_eq!((file.values::<u32>(span), shape), (&[1u32, 2, 3, 4][..], vec![2, 2]));
        for name in ["x", "v", "i"] {
            let error = format!("{:#}", Mapped::open(&path, name).err().unwrap());
            assert!(
                error.contains("t.safetensors") && error.contains("delete it"),
                "{error}"
            );
        }
    }
}
