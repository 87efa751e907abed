//! The one model worker: a thread that owns the encoder's time. Requests queue jobs; the worker
//! takes every job waiting (up to a number of texts), codes their texts in one batch, and
//! answers each job under its own policy. So concurrent requests share one model, the cores are
//! not fought over by parallel forward passes, and under load the encoder sees larger batches.

use crate::coder::{Answer, Coder, Policy};
use naics_common::tokenizer::encode_checked;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use tokio::sync::oneshot;

/// Why a job has no answers.
#[derive(Debug)]
pub enum JobError {
    /// Text `index` of the job is longer than the model takes.
    TooLong { index: usize, max: usize },
    /// The coder failed (an internal error, not the request's).
    Failed(String),
}

pub struct Job {
    pub texts: Vec<String>,
    pub policy: Policy,
    pub reply: oneshot::Sender<Result<Vec<Answer>, JobError>>,
}

/// Starts the worker; it stops when every sender is dropped. `queue` bounds the jobs waiting.
pub fn spawn(coder: &'static Coder<'static>, merge_texts: usize, queue: usize) -> SyncSender<Job> {
    let (tx, rx) = sync_channel(queue);
    std::thread::Builder::new()
        .name("model".into())
        .spawn(move || work(coder, &rx, merge_texts))
        .expect("spawning the model thread");
    tx
}

fn work(coder: &Coder, rx: &Receiver<Job>, merge_texts: usize) {
    while let Ok(first) = rx.recv() {
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        while texts < merge_texts {
            let Ok(job) = rx.try_recv() else { break };
            texts += job.texts.len();
            jobs.push(job);
        }
        // A request that timed out no longer waits for its answer.
        jobs.retain(|j| !j.reply.is_closed());
        run(coder, jobs);
    }
}

/// Codes the jobs' texts in one batch and answers each job.
fn run(coder: &Coder, jobs: Vec<Job>) {
    let all: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
    let result = catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<_> {
        let checked = encode_checked(coder.tokenizer(), &all)?;
        let mut keep = Vec::new();
        let mut offset = 0;
        let mut errors = Vec::new();
        for job in &jobs {
            let cut = checked[offset..offset + job.texts.len()]
                .iter()
                .position(|(_, cut)| *cut);
            errors.push(cut.map(|index| JobError::TooLong {
                index,
                max: coder.max_tokens(),
            }));
            if cut.is_none() {
                keep.extend(offset..offset + job.texts.len());
            }
            offset += job.texts.len();
        }
        let texts: Vec<String> = keep.iter().map(|&i| all[i].clone()).collect();
        let ids: Vec<Vec<u32>> = keep.iter().map(|&i| checked[i].0.clone()).collect();
        let policies: Vec<Policy> = jobs
            .iter()
            .zip(&errors)
            .filter(|(_, e)| e.is_none())
            .flat_map(|(j, _)| std::iter::repeat_n(j.policy, j.texts.len()))
            .collect();
        Ok((errors, coder.code_each(&texts, &ids, &policies)?))
    }));
    let (errors, answers) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return fail_all(jobs, &format!("{e:#}")),
        Err(_) => return fail_all(jobs, "the coder panicked"),
    };
    let mut answers = answers.into_iter();
    for (job, error) in jobs.into_iter().zip(errors) {
        let reply = match error {
            Some(e) => Err(e),
            None => Ok(answers.by_ref().take(job.texts.len()).collect()),
        };
        let _ = job.reply.send(reply);
    }
}

fn fail_all(jobs: Vec<Job>, why: &str) {
    for job in jobs {
        let _ = job.reply.send(Err(JobError::Failed(why.to_string())));
    }
}
