//! Progress of a transfer: a bar with rate and time left on a terminal; on anything else
//! (a log, a pipe, CI) a plain line at every tenth; nothing at all when asked to be quiet.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress(Arc<Inner>);

struct Inner {
    mode: Mode,
    bar: Mutex<Option<ProgressBar>>,
    total: AtomicU64,
    done: AtomicU64,
    /// The last tenth a plain line was printed for.
    tenth: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Progress {
    /// `quiet`: print nothing (with `--json`, whose output is for programs).
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Progress(Arc::new(Inner {
            mode,
            bar: Mutex::new(None),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            tenth: AtomicU64::new(0),
        }))
    }

    pub fn start(&self, total: u64, what: &str) {
        self.0.total.store(total, Ordering::Relaxed);
        self.0.done.store(0, Ordering::Relaxed);
        self.0.tenth.store(0, Ordering::Relaxed);
        match self.0.mode {
            Mode::Bar => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_message(what.to_owned());
                *self.bar() = Some(bar);
            }
            Mode::Lines => eprintln!("{what}: {total} bytes"),
            Mode::Quiet => {}
        }
    }

    pub fn advance(&self, bytes: u64) {
        let done = self.0.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        match self.0.mode {
            Mode::Bar => {
                if let Some(bar) = self.bar().as_ref() {
                    bar.set_position(done);
                }
            }
            Mode::Lines => {
                let total = self.0.total.load(Ordering::Relaxed).max(1);
                let tenth = done.saturating_mul(10) / total;
                if tenth > self.0.tenth.fetch_max(tenth, Ordering::Relaxed) {
                    eprintln!("{}% ({done} of {total} bytes)", (tenth * 10).min(100));
                }
            }
            Mode::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar().take() {
            bar.finish_and_clear();
        }
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.0.bar.lock().unwrap_or_else(|p| p.into_inner())
    }
}
