//! `naics_embed`: the coder and the embeddings as a Python module. A thin layer over
//! naics-trainer's library: the checkpoint is chosen, the arguments checked, texts coded and the
//! answers laid out by the code behind `naics-trainer search` and `classify`. This file converts
//! Python values, and lets go of the GIL while the model works, so that threads can share one
//! `Coder`. Tables go to pyarrow as one Arrow IPC stream, which pyarrow reads without a copy.

use anyhow::Context;
use arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::StreamWriter;
use candle_core::{Device, Tensor};
use naics_trainer::classify::{self, input::text_of};
use naics_trainer::coder::{self, BadArgument, Policy};
use naics_trainer::embedded::{self, Embedded};
use naics_trainer::model::lorentz;
use naics_trainer::setup::cpu;
use naics_trainer::train::checkpoint;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyIterator, PyString, PyTuple};
use std::path::PathBuf;
use std::sync::Arc;

/// Rows coded at a time by `classify`: the command line's `--batch-rows` default.
const BATCH_ROWS: usize = 1024;

/// A trained model and its coder, loaded once. Its methods let go of the GIL while they encode,
/// so a pool of threads can share one.
#[pyclass(frozen, module = "naics_embed")]
struct Coder {
    // Declared before `embedded`, so dropped first: it borrows the model.
    coder: coder::Coder<'static>,
    embedded: Box<Embedded>,
    checkpoint: PathBuf,
}

/// A model error (reading a file, a tensor) as Python's RuntimeError, with its causes.
fn runtime(err: anyhow::Error) -> PyErr {
    PyRuntimeError::new_err(format!("{err:#}"))
}

fn bad(err: BadArgument) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// `k` as the command line takes it: a negative one is out of range like 0.
fn count(k: i64) -> PyResult<usize> {
    usize::try_from(k).map_err(|_| PyValueError::new_err(format!("k: {k}: expected at least 1")))
}

/// The items of a column of texts: a list, a tuple, a pandas Series, a NumPy array or a pyarrow
/// array / chunked array. One str, a whole table or what is not iterable is a TypeError.
fn items_of<'py>(texts: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyIterator>> {
    const EXPECTED: &str = "texts: expected a list, a pandas Series or a pyarrow array of strings";
    let kind = texts.get_type().name()?.to_string();
    if texts.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{EXPECTED}, got one str: wrap it in a list"
        )));
    }
    if matches!(kind.as_str(), "Table" | "RecordBatch" | "DataFrame") {
        return Err(PyTypeError::new_err(format!(
            "texts: expected one column, got a {kind}: pass its text column, e.g. table[\"text\"]"
        )));
    }
    let items = if texts.hasattr("to_pylist")? {
        texts.call_method0("to_pylist")?
    } else if texts.hasattr("tolist")? {
        texts.call_method0("tolist")?
    } else {
        texts.clone()
    };
    items
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{EXPECTED}, got {kind}")))
}

/// Texts for `classify`: each item a text or why its row has none (`classify`'s `error`).
fn texts_of(texts: &Bound<'_, PyAny>) -> PyResult<Vec<Result<String, String>>> {
    items_of(texts)?
        .map(|item| {
            let item = item?;
            Ok(if item.is_none() {
                text_of(None)
            } else if let Ok(s) = item.cast::<PyString>() {
                text_of(Some(&s.to_cow()?))
            } else if item.cast::<PyFloat>().is_ok_and(|f| f.value().is_nan()) {
                // pandas' missing value.
                text_of(None)
            } else {
                Err(format!("expected a string, got {}", item.get_type().name()?))
            })
        })
        .collect()
}

/// Strings for `embed`: every item must be one (an error names the first that is not).
fn strings_of(texts: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    items_of(texts)?
        .enumerate()
        .map(|(i, item)| {
            let item = item?;
            match item.cast::<PyString>() {
                Ok(s) => Ok(s.to_cow()?.into_owned()),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "texts[{i}]: expected a string, got {}",
                    item.get_type().name()?
                ))),
            }
        })
        .collect()
}

/// A record batch as a `pyarrow.Table` (one IPC stream; pyarrow maps its buffers).
fn to_pyarrow<'py>(py: Python<'py>, schema: Arc<Schema>, batches: &[RecordBatch]) -> PyResult<Bound<'py, PyAny>> {
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &schema).map_err(|e| runtime(e.into()))?;
        for b in batches {
            writer.write(b).map_err(|e| runtime(e.into()))?;
        }
        writer.finish().map_err(|e| runtime(e.into()))?;
    }
    let pa = py.import("pyarrow")?;
    let buffer = pa.call_method1("py_buffer", (PyBytes::new(py, &bytes),))?;
    py.import("pyarrow.ipc")?
        .call_method1("open_stream", (buffer,))?
        .call_method0("read_all")
}

/// A NumPy float32 array of `shape` from row-major values.
fn to_numpy<'py>(py: Python<'py>, values: &[f32], shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    py.import("numpy")?
        .call_method1("frombuffer", (PyBytes::new(py, &bytes), "<f4"))?
        .call_method1("reshape", (PyTuple::new(py, shape)?,))
}

/// Points given as anything NumPy reads, as a [rows, width] tensor; `one`: a single point.
fn points_of(x: &Bound<'_, PyAny>, name: &str, width: usize) -> PyResult<(Tensor, bool)> {
    let np = x.py().import("numpy")?;
    let array = np.call_method1("ascontiguousarray", (x, "<f4"))?;
    let shape: Vec<usize> = array.getattr("shape")?.extract()?;
    let (rows, one) = match shape.as_slice() {
        [w] if *w == width => (1, true),
        [n, w] if *w == width => (*n, false),
        _ => {
            return Err(PyValueError::new_err(format!(
                "{name}: expected a point of {width} coordinates or an array (n, {width}), got shape {shape:?}"
            )));
        }
    };
    let bytes: Vec<u8> = array.call_method0("tobytes")?.extract()?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let tensor = Tensor::from_vec(values, (rows, width), &Device::Cpu).map_err(|e| runtime(e.into()))?;
    Ok((tensor, one))
}

#[pymethods]
impl Coder {
    /// Loads a trained model: the weights file `path` where given, else the best checkpoint of
    /// `experiment`, else that of the last curriculum stage in conf/ (paths relative to the
    /// working directory, as `naics-trainer search` finds them). The codes' points, the entry
    /// index and the fusion come from the caches the command line writes, or are made once.
    #[staticmethod]
    #[pyo3(signature = (path=None, experiment=None))]
    fn load(py: Python<'_>, path: Option<PathBuf>, experiment: Option<String>) -> PyResult<Coder> {
        let chosen = checkpoint::chosen(path.as_deref(), experiment.as_deref())
            .map_err(|e| PyFileNotFoundError::new_err(format!("{e:#}")))?;
        if !chosen.exists() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: no such checkpoint (a weights file, step-NNNNNNN.safetensors)",
                chosen.display()
            )));
        }
        let embedded = py
            .detach(|| cpu::on_pool(|| embedded::load(&chosen).map(Box::new)))
            .map_err(runtime)?;
        // SAFETY: the model lives in its own heap allocation, which never moves while the box
        // does and is freed only after `coder` (declared first, dropped first). `coder` is never
        // handed out with its 'static lifetime: every method borrows it from `&self`.
        let model: &'static Embedded = unsafe { &*(embedded.as_ref() as *const Embedded) };
        let coder = py
            .detach(|| cpu::on_pool(|| coder::Coder::new(model)))
            .map_err(runtime)?;
        Ok(Coder {
            coder,
            embedded,
            checkpoint: std::path::absolute(&chosen).unwrap_or(chosen),
        })
    }

    /// The leaf codes of one free-text description, as `naics-trainer search --json` prints
    /// them: a dict with `ranked` (the `k` most likely leaves: code, title, distance,
    /// confidence and path) and the level-wise answer (`level`: the deepest code whose
    /// confidence reaches `min_confidence`), `abstained` where the top confidence is below
    /// `abstain`.
    #[pyo3(signature = (text, k=10, min_confidence=0.5, abstain=0.0))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        k: i64,
        min_confidence: f64,
        abstain: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let policy = self.policy(k, min_confidence, abstain)?;
        let text = text_of(Some(text)).map_err(|why| PyValueError::new_err(format!("text: {why}")))?;
        let json = py
            .detach(|| {
                cpu::on_pool(|| -> anyhow::Result<String> {
                    let answer = self.coder.code(&[text], &policy)?.remove(0);
                    Ok(serde_json::to_string(&self.coder.show(&answer))?)
                })
            })
            .map_err(runtime)?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Codes many texts: a list, a pandas Series or a pyarrow array. Returns a `pyarrow.Table`
    /// with the columns `naics-trainer classify` adds to each row: `code_1..k`, `title_1..k`,
    /// `distance_1..k`, `confidence_1..k`, `answer_code`, `answer_title`, `answer_level`,
    /// `answer_confidence`, `abstained` and `error`. A row without a usable text (None, empty,
    /// not a string, longer than the model takes unless `truncate`) gets its `error`; the others
    /// are coded all the same.
    #[pyo3(signature = (texts, k=5, min_confidence=0.5, abstain=0.0, truncate=false))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        k: i64,
        min_confidence: f64,
        abstain: f64,
        truncate: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let policy = self.policy(k, min_confidence, abstain)?;
        let texts = texts_of(texts)?;
        let batches = py
            .detach(|| {
                cpu::on_pool(|| {
                    texts
                        .chunks(BATCH_ROWS)
                        .map(|chunk| classify::answer_batch(&self.coder, chunk, &policy, truncate))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .map_err(runtime)?;
        let schema = Arc::new(Schema::new(classify::output::answer_fields(policy.k)));
        to_pyarrow(py, schema, &batches)
    }

    /// The texts' points on the hyperboloid, as the coder places them: a NumPy float32 array
    /// (n, dim + 1) whose rows x satisfy -x0^2 + x1^2 + ... = -1 / c.
    fn embed<'py>(&self, py: Python<'py>, texts: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let texts = strings_of(texts)?;
        let width = self.embedded.config.model.embedding_dim + 1;
        if texts.is_empty() {
            return to_numpy(py, &[], &[0, width]);
        }
        let values = py
            .detach(|| {
                cpu::on_pool(|| -> anyhow::Result<Vec<f32>> {
                    let points = self.embedded.model.text_points(&texts)?;
                    Ok(points.flatten_all()?.to_vec1::<f32>()?)
                })
            })
            .map_err(runtime)?;
        to_numpy(py, &values, &[texts.len(), width])
    }

    /// The code table as a `pyarrow.Table`: code, parent, level (NAICS: its digits; other
    /// trees: its depth, 1 at the roots), title, description and whether texts are coded to it
    /// (`leaf`), in the tree's pre-order.
    fn codes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let codes = &self.embedded.codes;
        let mut leaf = vec![false; codes.len()];
        for &c in &self.coder.candidates {
            leaf[c] = true;
        }
        let parent = codes.parent.iter().map(|p| p.map(|p| codes.code[p].as_str()));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(&codes.code)),
            Arc::new(parent.collect::<StringArray>()),
            Arc::new(codes.level.iter().map(|&l| l as i32).collect::<Int32Array>()),
            Arc::new(StringArray::from_iter_values(&codes.title)),
            Arc::new(StringArray::from_iter_values(&codes.description)),
            Arc::new(BooleanArray::from(leaf)),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("parent", DataType::Utf8, true),
            Field::new("level", DataType::Int32, false),
            Field::new("title", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, false),
            Field::new("leaf", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .context("the code table")
            .map_err(runtime)?;
        to_pyarrow(py, schema, &[batch])
    }

    /// The Lorentz (geodesic) distance between points of this model's space: two points give a
    /// float; a point and an array (n, dim + 1), or two arrays of n rows, give n distances.
    fn distance<'py>(
        &self,
        py: Python<'py>,
        a: &Bound<'py, PyAny>,
        b: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let width = self.embedded.config.model.embedding_dim + 1;
        let (u, u_one) = points_of(a, "a", width)?;
        let (v, v_one) = points_of(b, "b", width)?;
        let (n, m) = (
            u.dim(0).map_err(|e| runtime(e.into()))?,
            v.dim(0).map_err(|e| runtime(e.into()))?,
        );
        if n != m && n != 1 && m != 1 {
            return Err(PyValueError::new_err(format!(
                "a has {n} points and b {m}: expected as many, or one"
            )));
        }
        let c = self.embedded.curvature();
        let d = lorentz::distance(&u, &v, c)
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.to_vec1::<f32>())
            .map_err(|e| runtime(e.into()))?;
        if u_one && v_one {
            return Ok(PyFloat::new(py, f64::from(d[0])).into_any());
        }
        to_numpy(py, &d, &[d.len()])
    }

    /// The checkpoint's weights file, as an absolute path.
    #[getter]
    fn checkpoint(&self) -> PathBuf {
        self.checkpoint.clone()
    }

    /// The experiment the checkpoint was trained as (its curriculum stage).
    #[getter]
    fn experiment(&self) -> String {
        self.embedded.config.experiment.clone()
    }

    /// The dimension of the space: points have dim + 1 coordinates.
    #[getter]
    fn dim(&self) -> usize {
        self.embedded.config.model.embedding_dim
    }

    /// The space's curvature c: points x satisfy -x0^2 + x1^2 + ... = -1 / c.
    #[getter]
    fn curvature(&self) -> f64 {
        self.embedded.curvature()
    }

    fn __repr__(&self) -> String {
        format!(
            "Coder({}: {} codes, {} leaves, dim {}, {})",
            self.embedded.config.experiment,
            self.embedded.codes.len(),
            self.coder.candidates.len(),
            self.embedded.config.model.embedding_dim,
            self.checkpoint.display()
        )
    }
}

impl Coder {
    fn policy(&self, k: i64, min_confidence: f64, abstain: f64) -> PyResult<Policy> {
        Policy::checked(
            Some(count(k)?),
            Some(min_confidence),
            Some(abstain),
            self.coder.candidates.len(),
        )
        .map_err(bad)
    }
}

/// Hierarchy-aware embeddings of classification codes, and coding free text into them.
#[pymodule]
fn naics_embed(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The command line's process settings (allocator, thread spinning), before the first model.
    cpu::setup();
    m.add_class::<Coder>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
