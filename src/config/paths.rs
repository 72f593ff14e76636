//! Paths the router will create a file at (a jsonl sink's `path`,
//! `store.path`), checked on disk as `serve` will meet them: by looking
//! only (a stat of the path and its folders), never creating anything, so
//! that `check`, `serve` start and a reload refuse what opening would.

use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::problems::{Checker, Pos};
use super::yaml::Node;

impl Checker<'_> {
    /// Reports `path` (the value of the `path` key in `section`, named
    /// `key` in messages, e.g. `sinks.orders.path`) when it cannot be a
    /// file: it is a folder, or one of its folders is a file. `example` is
    /// a file name to suggest. Relative paths resolve against the config
    /// file's folder.
    pub(super) fn file_path(
        &mut self,
        section: Option<&Spanned<Node>>,
        path: &Path,
        key: &str,
        example: &str,
    ) {
        // At the `path` key; without one (the default), at the section.
        let written = section.and_then(|s| match &s.value {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.value.as_str() == Some("path")),
            _ => None,
        });
        let (key_at, value_at) = match written {
            Some((k, v)) => (Pos::from(k.referenced), Some(Pos::from(v.referenced))),
            None => (
                section.map_or(Pos::UNKNOWN, |s| Pos::from(s.referenced)),
                None,
            ),
        };
        // A value that holds an unset variable (`check --no-env`) is not judged.
        if value_at.is_some_and(|at| self.unresolved.contains(&at)) {
            return;
        }
        let resolved = self.base_dir().join(path);
        if let Some(message) = unusable_file_path(&resolved, key, example) {
            self.problem(key_at, message);
        }
    }

    /// The config file's folder, which relative paths resolve against.
    fn base_dir(&self) -> PathBuf {
        match Path::new(&self.file).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Why a file cannot be created or opened at `path`, judged by looking
/// only: `path` is a folder, or the nearest of its folders that exists is
/// not a folder. `None` when nothing on disk stands in the way (whether it
/// can be written is known only by writing).
pub(super) fn unusable_file_path(path: &Path, key: &str, example: &str) -> Option<String> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Some(format!(
            "`{key}` {} is a folder, not a file: name a file in it, e.g. `{}`",
            path.display(),
            path.join(example).display()
        ));
    }
    // The nearest existing ancestor; one below a file says "not a folder".
    for folder in path.ancestors().skip(1) {
        if folder.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(folder) {
            Ok(meta) if meta.is_dir() => return None,
            Ok(_) => {
                return Some(format!(
                    "`{key}` {}: {} is a file, not a folder, so nothing can be created in it: \
                     choose another path, or move that file away",
                    path.display(),
                    folder.display()
                ));
            }
            Err(_) => continue,
        }
    }
    None
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
