//! Reading processes from `/proc`: children of a process, whether one is alive, its resident memory. Tests use
//! it to prove that no pod process is left behind; benchmarks, to measure memory.

use anyhow::Context;

/// The state letter and parent PID of a process (`/proc/<pid>/stat`), if it exists.
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command (which may itself contain spaces): state, ppid, ...
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// PIDs of the live (non-zombie) children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z'))
        .collect()
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_its_own_child_and_its_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        assert!(children_of(me).contains(&child.id()));
        assert!(alive(child.id()));
        assert!(rss_kib(child.id()).expect("rss") > 0);
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(!alive(child.id()));
        assert!(!children_of(me).contains(&child.id()));
    }
}
