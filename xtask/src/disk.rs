//! Free-space checks before the big builds, so a full disk is reported in one sentence up front instead of as a
//! linker killed by `SIGBUS` halfway through a compile (the linker maps its output file into memory, and writing
//! to that mapping on a full disk is a bus error).

use std::path::Path;

use anyhow::{Context, bail};

/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Fails with a clear message when the file system holding `path` has less than `needed` bytes free for this
/// user. `what` names what the space is for.
pub fn ensure_free(path: &Path, needed: u64, what: &str) -> anyhow::Result<()> {
    let free = free_bytes(path)?;
    check(free, needed, path, what)
}

/// Like [`ensure_free`] for a directory that grows to about `full` bytes: what it already holds is subtracted
/// (a warm re-run needs little), but at least `floor` bytes must be free.
pub fn ensure_room_to_grow(dir: &Path, full: u64, floor: u64, what: &str) -> anyhow::Result<()> {
    let needed = full.saturating_sub(size_of_dir(dir)).max(floor);
    ensure_free(dir, needed, what)
}

/// Bytes of the regular files under `dir` (0 when it does not exist; unreadable entries are skipped).
fn size_of_dir(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

fn check(free: u64, needed: u64, path: &Path, what: &str) -> anyhow::Result<()> {
    if free < needed {
        bail!(
            "{what} needs about {} of free disk space on the file system of {}, and only {} is free: \
             free some space (an old `target/` directory is usually the largest) and run again",
            gib(needed),
            path.display(),
            gib(free)
        );
    }
    Ok(())
}

/// Bytes available to an unprivileged user on the file system holding `path` (or its nearest existing parent).
fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .with_context(|| format!("no part of {} exists", path.display()))?;
    let stats = nix::sys::statvfs::statvfs(existing)
        .with_context(|| format!("cannot read the free space of {}", existing.display()))?;
    // Both are `u64` on Linux, narrower C types elsewhere.
    Ok((stats.blocks_available() as u64).saturating_mul(stats.fragment_size() as u64))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_when_short_and_names_the_numbers() {
        let err = check(GIB / 2, 8 * GIB, Path::new("/work"), "the test run")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("the test run needs about 8.0 GiB"), "{err}");
        assert!(err.contains("only 0.5 GiB is free"), "{err}");
        assert!(err.contains("/work"), "{err}");
    }

    #[test]
    fn passes_with_enough_space() {
        assert!(check(9 * GIB, 8 * GIB, Path::new("/work"), "the test run").is_ok());
    }

    #[test]
    fn sizes_a_directory_tree() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        let nested = dir.join("a/b");
        assert!(std::fs::create_dir_all(&nested).is_ok());
        assert!(std::fs::write(dir.join("one"), [0u8; 1000]).is_ok());
        assert!(std::fs::write(nested.join("two"), [0u8; 234]).is_ok());
        let size = size_of_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(size, 1234);
        assert_eq!(size_of_dir(&dir), 0);
    }

    #[test]
    fn reads_the_free_space_of_a_real_directory() {
        let free = free_bytes(&std::env::temp_dir().join("does/not/exist/yet"));
        assert!(free.is_ok(), "{free:?}");
    }
}
