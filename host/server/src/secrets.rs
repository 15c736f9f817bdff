//! Secrets that rotate without a restart: the admin tokens (`admin.token_file`) and a
//! tenant's token keys (`[tenant.auth] key_file`) can live in a file holding one or more
//! of them. The file is re-read when it changes (looked at, on use, at most once per
//! [`RECHECK`]), so an operator rotates by adding the new secret, moving clients over,
//! then removing the old one. A file that turns unreadable or invalid keeps the last good
//! set, and the log says why; the first read must succeed (a bad config fails at start).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// How often a secrets file is looked at for changes, at most.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

type Parse<T> = fn(&str) -> Result<T, String>;

/// A set of secrets: fixed (from the config) or the current content of a file.
pub struct Rotating<T> {
    file: Option<(PathBuf, Parse<T>)>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    /// Modification time and length of the content `current` came from.
    seen: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl<T> Rotating<T> {
    /// Secrets that never change.
    pub fn fixed(value: T) -> Self {
        let state = State { current: Arc::new(value), seen: None, checked: Instant::now() };
        Rotating { file: None, state: Mutex::new(state) }
    }

    /// Secrets read from `path` now and whenever it changes.
    pub fn file(path: &Path, parse: Parse<T>) -> Result<Self, String> {
        let (value, seen) = read(path, parse)?;
        let state = State { current: Arc::new(value), seen: Some(seen), checked: Instant::now() };
        Ok(Rotating { file: Some((path.to_path_buf(), parse)), state: Mutex::new(state) })
    }

    /// The secrets in force now.
    pub fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap();
        if let Some((path, parse)) = &self.file
            && state.checked.elapsed() >= RECHECK
        {
            state.checked = Instant::now();
            if stamp(path).ok() != state.seen {
                match read(path, *parse) {
                    Ok((value, seen)) => {
                        tracing::info!(file = %path.display(), "secrets file changed; new set in force");
                        state.current = Arc::new(value);
                        state.seen = Some(seen);
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = e, "secrets file refused; keeping the last good set")
                    }
                }
            }
        }
        state.current.clone()
    }
}

impl<T> Rotating<T> {
    /// Makes the next [`Rotating::current`] look at the file (tests).
    #[cfg(test)]
    pub(crate) fn recheck_now(&self) {
        self.state.lock().unwrap().checked -= RECHECK;
    }
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

fn read<T>(path: &Path, parse: Parse<T>) -> Result<(T, (SystemTime, u64)), String> {
    let seen = stamp(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((value, seen))
}

/// The non-empty lines of a file, each at least `min` bytes: tokens or shared secrets.
pub fn lines(text: &str, min: usize) -> Result<Vec<String>, String> {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err("holds no secret (one per line)".into());
    }
    if let Some(i) = lines.iter().position(|l| l.len() < min) {
        return Err(format!("secret on line {} is shorter than {min} bytes", i + 1));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_picked_up_and_a_broken_one_keeps_the_last_good_set() {
        let path = std::env::temp_dir().join(format!("streamgate-secrets-{}", std::process::id()));
        std::fs::write(&path, "first-secret-0123456789\n").unwrap();
        let secrets = Rotating::file(&path, |t| lines(t, 16)).unwrap();
        assert_eq!(*secrets.current(), vec!["first-secret-0123456789".to_string()]);
        std::fs::write(&path, "# rotating\nfirst-secret-0123456789\nsecond-secret-0123456789\n").unwrap();
        secrets.recheck_now();
        assert_eq!(secrets.current().len(), 2, "both in force while clients move over");
        std::fs::write(&path, "short\n").unwrap();
        secrets.recheck_now();
        assert_eq!(secrets.current().len(), 2, "a refused file keeps the last good set");
        std::fs::remove_file(&path).unwrap();
        assert!(Rotating::file(&path, |t| lines(t, 16)).is_err(), "the first read must succeed");
        assert!(lines("\n# only a comment\n", 16).is_err());
    }
}
