//! Progress bars (indicatif) for blob transfers, shown only when stderr is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};

use berth_client::{BlobOutcome, Digest, NoProgress, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar per blob in flight.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    /// A bar for a single download of `size` bytes (used by `berth blob`).
    pub fn single(label: &str, size: u64) -> Option<ProgressBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(Self::style());
        bar.set_prefix(label.to_owned());
        Some(bar)
    }
}

/// The reporter to use: bars on a terminal, nothing otherwise.
pub fn reporter() -> Arc<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Arc::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        })
    } else {
        Arc::new(NoProgress)
    }
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

impl Reporter for Bars {
    fn blob_started(&self, digest: &Digest, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(Self::style());
        bar.set_prefix(short(digest));
        self.bars
            .lock()
            .expect("bars lock")
            .insert(digest.clone(), bar);
    }
    fn blob_progress(&self, digest: &Digest, bytes: u64) {
        if let Some(b) = self.bars.lock().expect("bars lock").get(digest) {
            b.inc(bytes);
        }
    }
    fn blob_restarted(&self, digest: &Digest) {
        if let Some(b) = self.bars.lock().expect("bars lock").get(digest) {
            b.set_position(0);
        }
    }
    fn blob_finished(&self, digest: &Digest, outcome: BlobOutcome) {
        if let Some(b) = self.bars.lock().expect("bars lock").remove(digest) {
            b.finish_and_clear();
        }
        let what = match outcome {
            BlobOutcome::Copied => return,
            BlobOutcome::Skipped => "exists",
            BlobOutcome::Mounted => "mounted",
        };
        let _ = self.multi.println(format!("{} {what}", short(digest)));
    }
}
