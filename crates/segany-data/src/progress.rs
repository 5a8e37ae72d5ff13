//! Progress bars for long runs.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar of `len` steps on stderr, or a hidden one when `show` is
/// false (tests, piped runs).
///
/// ```
/// let bar = segany_data::progress::progress_bar(10, "demo", false);
/// bar.inc(1);
/// bar.finish_and_clear();
/// ```
pub fn progress_bar(len: u64, label: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
    {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}
