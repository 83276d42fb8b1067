//! Progress bars for kvctl's long commands (snapshot save, defrag, check
//! perf), drawn on stdout only when it is a terminal: piped or captured
//! output stays byte-identical to etcdctl's.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps (`template` in indicatif's syntax), or None when
/// stdout is not a terminal.
pub fn steps(len: u64, template: &str) -> Option<ProgressBar> {
    make(std::io::stdout().is_terminal(), Some(len), template)
}

/// A counter of bytes received (length unknown), or None when stdout is
/// not a terminal.
pub fn bytes() -> Option<ProgressBar> {
    make(
        std::io::stdout().is_terminal(),
        None,
        "{spinner} {bytes} received ({bytes_per_sec})",
    )
}

/// The decision and the set-up, apart from the terminal probe (for tests).
fn make(stdout_is_terminal: bool, len: Option<u64>, template: &str) -> Option<ProgressBar> {
    if !stdout_is_terminal {
        return None;
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    // stdout, where etcdctl draws its bar; indicatif's default is stderr.
    bar.set_draw_target(ProgressDrawTarget::stdout());
    // A template is ours and fixed; a bad one would only lose the style.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bar_unless_stdout_is_a_terminal() {
        assert!(make(false, Some(3), "{pos}/{len}").is_none());
        assert!(make(false, None, "{bytes}").is_none());
        let bar = make(true, Some(3), "{pos}/{len}").expect("a bar on a terminal");
        assert_eq!(bar.length(), Some(3));
        let spinner = make(true, None, "{bytes}").expect("a counter on a terminal");
        assert_eq!(spinner.length(), None);
    }
}
