//! The one model worker: a thread that owns the encoder's time. Requests queue jobs; the worker
//! takes every job waiting (up to a number of texts), codes their texts in one batch, and
//! answers each job under its own policy. So concurrent requests share one model, the cores are
//! not fought over by parallel forward passes, and under load the encoder sees larger batches.

use crate::coder::{Answer, Coder, Policy};
use naics_common::tokenizer::encode_checked;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};
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

/// Starts the worker; it stops when every sender is dropped. `queue` bounds the jobs waiting;
/// `wait` is how long a batch may wait for the clients of the last one (see [`Batching`]).
pub fn spawn(coder: &'static Coder<'static>, merge_texts: usize, wait: Duration, queue: usize) -> SyncSender<Job> {
    let (tx, rx) = sync_channel(queue);
    std::thread::Builder::new()
        .name("model".into())
        .spawn(move || work(coder, &rx, merge_texts, wait))
        .expect("spawning the model thread");
    tx
}

fn work(coder: &Coder, rx: &Receiver<Job>, merge_texts: usize, wait: Duration) {
    let mut batching = Batching::default();
    while let Some(mut jobs) = batching.next(rx, merge_texts, wait) {
        // A request that timed out no longer waits for its answer.
        jobs.retain(|j| !j.reply.is_closed());
        let answered = jobs.len();
        run(coder, jobs);
        batching.answered(rx, answered);
    }
}

/// How the worker cuts the queue into batches. Clients that were just answered tend to ask
/// again at once (a closed loop: a page, a script, a load test), and a batch that starts a
/// moment before their requests arrive leaves them to wait for all of it and then for their
/// own: the tail of the latency doubles. So a batch waits, up to `wait`, until as many jobs
/// are there as were answered last time plus those that came in meanwhile; a lone client
/// (one job answered, none waiting) never waits. As TorchServe's `max_batch_delay`, but only
/// while the last batch says more is coming.
#[derive(Default)]
struct Batching {
    /// Jobs already taken from the queue for the next batch.
    waiting: Vec<Job>,
    /// Jobs the next batch waits for.
    expected: usize,
}

impl Batching {
    /// The next batch (at least one job; up to about `merge_texts` texts), or None when every
    /// sender is gone.
    fn next(&mut self, rx: &Receiver<Job>, merge_texts: usize, wait: Duration) -> Option<Vec<Job>> {
        if self.waiting.is_empty() {
            self.waiting.push(rx.recv().ok()?);
        }
        let deadline = Instant::now() + wait;
        let mut texts: usize = self.waiting.iter().map(|j| j.texts.len()).sum();
        while texts < merge_texts {
            let job = if self.waiting.len() < self.expected {
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
            } else {
                rx.try_recv().ok()
            };
            let Some(job) = job else { break };
            texts += job.texts.len();
            self.waiting.push(job);
        }
        Some(std::mem::take(&mut self.waiting))
    }

    /// After a batch of `answered` jobs: takes the jobs that arrived while it ran.
    fn answered(&mut self, rx: &Receiver<Job>, answered: usize) {
        self.waiting.extend(rx.try_iter());
        self.expected = answered + self.waiting.len();
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

#[cfg(test)]
mod tests {
    use super::{Batching, Job};
    use crate::coder::Policy;
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    fn job() -> Job {
        Job {
            texts: vec!["a text".into()],
            policy: Policy::default(),
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    /// A batching whose last batch answered `answered` jobs, `during` more having come in.
    fn after(answered: usize, during: usize) -> (Batching, SyncSender<Job>, Receiver<Job>) {
        let (tx, rx) = sync_channel(16);
        for _ in 0..during {
            tx.send(job()).unwrap();
        }
        let mut batching = Batching::default();
        batching.answered(&rx, answered);
        (batching, tx, rx)
    }

    /// Sends one job now and `later` more after 50 ms, from another thread.
    fn arrive(tx: &SyncSender<Job>, later: usize) -> JoinHandle<()> {
        tx.send(job()).unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for _ in 0..later {
                tx.send(job()).unwrap();
            }
        })
    }

    /// The size of the next batch and how long it took to make.
    fn timed(batching: &mut Batching, rx: &Receiver<Job>, merge_texts: usize, wait: Duration) -> (usize, Duration) {
        let start = Instant::now();
        let batch = batching.next(rx, merge_texts, wait).unwrap();
        (batch.len(), start.elapsed())
    }

    #[test]
    fn a_lone_client_never_waits() {
        let (mut batching, tx, rx) = after(1, 0);
        let late = arrive(&tx, 1);
        let (len, took) = timed(&mut batching, &rx, 256, Duration::from_secs(5));
        assert_eq!(len, 1);
        assert!(took < Duration::from_millis(40));
        late.join().unwrap();
    }

    #[test]
    fn a_batch_waits_for_the_clients_of_the_last_one() {
        let (mut batching, tx, rx) = after(3, 0);
        let late = arrive(&tx, 2);
        assert_eq!(batching.next(&rx, 256, Duration::from_secs(5)).unwrap().len(), 3);
        late.join().unwrap();
        // Jobs that came in while the last batch ran wait with its clients.
        let (mut batching, tx, rx) = after(1, 2);
        let late = arrive(&tx, 0);
        assert_eq!(batching.expected, 3);
        assert_eq!(batching.next(&rx, 256, Duration::from_secs(5)).unwrap().len(), 3);
        late.join().unwrap();
    }

    #[test]
    fn the_wait_is_bounded_and_so_is_the_batch() {
        let (mut batching, tx, rx) = after(8, 0);
        let late = arrive(&tx, 0);
        let (len, took) = timed(&mut batching, &rx, 256, Duration::from_millis(20));
        assert_eq!(len, 1);
        assert!(took >= Duration::from_millis(20));
        late.join().unwrap();
        // Enough texts end the batch without waiting.
        let (mut batching, tx, rx) = after(8, 0);
        let late = arrive(&tx, 0);
        let (len, took) = timed(&mut batching, &rx, 1, Duration::from_secs(5));
        assert_eq!(len, 1);
        assert!(took < Duration::from_millis(40));
        late.join().unwrap();
    }
}
