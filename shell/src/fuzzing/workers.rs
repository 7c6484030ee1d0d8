//! Threads the fuzz targets hand work to, started once per process and kept. A thread started
//! and joined within one input is still ending (running its thread-local destructors) when
//! the join returns, so LeakSanitizer, which checks after each input, reports the thread's own
//! bookkeeping as that input's leak; kept threads have none to report.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::Result as Outcome;

/// Work for a thread.
type Job = Box<dyn FnOnce() + Send>;

/// How many threads are kept (`instantiate_ops` asks from all but the last at once; `read_file`'s
/// FIFO writer runs on the last).
pub(super) const WORKERS: usize = 5;

/// The kept threads' queues (each thread takes its jobs in order).
fn queues() -> &'static [Mutex<Sender<Job>>] {
    static QUEUES: OnceLock<Vec<Mutex<Sender<Job>>>> = OnceLock::new();
    QUEUES.get_or_init(|| {
        (0..WORKERS)
            .map(|i| {
                let (send, receive) = mpsc::channel::<Job>();
                let started = std::thread::Builder::new().name(format!("fuzz-worker-{i}")).spawn(move || {
                    for job in receive {
                        job();
                    }
                });
                if let Err(error) = started {
                    panic!("cannot start the fuzz targets' thread {i}: {error}");
                }
                Mutex::new(send)
            })
            .collect()
    })
}

/// A job handed to a kept thread: [`Handle::join`] waits for what it returns.
pub(super) struct Handle<T>(Receiver<Outcome<T>>);

impl<T> Handle<T> {
    /// What the job returned; a panic in it goes on in the caller.
    pub(super) fn join(self) -> T {
        match self.0.recv() {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => panic::resume_unwind(panic),
            Err(_) => panic!("a fuzz worker thread ended"),
        }
    }
}

/// Runs `job` on kept thread `worker` (modulo [`WORKERS`]): jobs given to different threads
/// run at once, jobs given to one thread one after another.
pub(super) fn spawn<T: Send + 'static>(worker: usize, job: impl FnOnce() -> T + Send + 'static) -> Handle<T> {
    let (send, receive) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = send.send(panic::catch_unwind(AssertUnwindSafe(job)));
    });
    let queue = queues()[worker % WORKERS].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if queue.send(job).is_err() {
        panic!("a fuzz worker thread ended");
    }
    Handle(receive)
}
