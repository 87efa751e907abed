//! Validation and model selection: the validation loss or a hierarchy metric over all codes
//! (`training.trainer.monitor`) after each epoch (or every `val_every_n_steps`), a checkpoint
//! each time, the best kept, and early stopping when `patience` validations bring nothing.

use super::TrainingData;
use super::checkpoint::{self, Checkpoint, TrainState};
use super::loss::batch_loss;
use super::optim::AdamW;
use crate::model::{Embedder, lorentz};
use crate::{metrics, tables};
use anyhow::{Result, bail};
use naics_common::config::{Loaded, Monitor};
use naics_common::samples::{Record, SamplesFile};
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Mean InfoNCE over a samples file, without dropout or gradients.
pub fn validate(model: &Embedder, data: &TrainingData, file: &SamplesFile) -> Result<f64> {
    let batch = model.config.data.batch_size.max(1);
    let (mut total, mut count) = (0.0, 0usize);
    for start in (0..file.len()).step_by(batch) {
        let records: Vec<Record> = (start..(start + batch).min(file.len())).map(|i| file.get(i)).collect();
        let loss = batch_loss(model, data, &records, &[], false)?;
        total += loss.nce.to_scalar::<f32>()? as f64 * loss.samples as f64;
        count += loss.samples;
    }
    Ok(if count == 0 { f64::NAN } else { total / count as f64 })
}

/// A hierarchy metric over all codes (over `eval`'s sample on trees past
/// `tables::METRIC_MAX_CODES`), as `eval` computes it.
pub fn hierarchy_metric(model: &Embedder, data: &TrainingData, metric: Monitor) -> Result<f64> {
    let sample = tables::metric_codes(&data.codes, tables::METRIC_MAX_CODES);
    let n = sample.len();
    let (points, _) = model.embed_codes(data.codes.len())?;
    let emb = lorentz::distance_matrix(&points, &sample, model.curvature())?;
    let tree = data.tree.among_values(&sample);
    let (parents, levels) = tables::sub_tree(&data.codes, &sample);
    Ok(match metric {
        Monitor::ValLoss => bail!("val_loss is not a hierarchy metric"),
        Monitor::Cophenetic => metrics::pearson(&metrics::upper_triangle(&tree, n), &metrics::upper_triangle(&emb, n)),
        Monitor::NdcgAt10 => metrics::ndcg_at(&tree, &emb, n, 10),
        Monitor::ParentAt1 => metrics::parent_at_1(&parents, &levels, &emb, n),
        Monitor::NeighbourhoodMap => metrics::neighbourhood_map(&parents, &emb, n),
    })
}

/// Validates, writes a checkpoint, keeps the best 3 by the monitored value and the last; false
/// when patience ran out.
#[allow(clippy::too_many_arguments)] // the loop's state, passed as it stands
pub fn validate_and_save(
    model: &Embedder,
    data: &TrainingData,
    validation: &SamplesFile,
    optimizer: &mut AdamW,
    state: &mut TrainState,
    dir: &Path,
    loaded: &Loaded,
    metrics: &mut std::fs::File,
) -> Result<bool> {
    let val_loss = validate(model, data, validation)?;
    let monitor = loaded.config.training.trainer.monitor;
    let mut values = json!({"val_loss": val_loss});
    let score = match monitor {
        Monitor::ValLoss => val_loss,
        metric => {
            let value = hierarchy_metric(model, data, metric)?;
            values[metric.name()] = json!(value);
            -value
        }
    };
    let mut line = json!({"step": state.step, "epoch": state.epoch});
    line.as_object_mut()
        .expect("an object")
        .extend(values.as_object().expect("an object").clone());
    writeln!(metrics, "{line}")?;
    if score < state.best_score {
        state.best_score = score;
        state.bad_validations = 0;
    } else {
        state.bad_validations += 1;
    }
    checkpoint::save(&mut Checkpoint {
        dir,
        state,
        score,
        metrics: values,
        loaded,
        varmap: &model.varmap,
        optimizer,
        validation,
    })?;
    Ok(state.bad_validations < loaded.config.training.trainer.patience)
}
