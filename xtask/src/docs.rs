//! Tests that keep the documentation honest about flags: every flag the Markdown files name (an inline code span
//! that starts with `--`) exists in one of the project's binaries, and every flag of every binary has help text,
//! since `--help` is where flags are documented.

use std::collections::BTreeSet;

use clap::CommandFactory;

/// The Markdown files at the repository root.
const DOCS: &[&str] = &[
    "README.md",
    "ARCHITECTURE.md",
    "SECURITY.md",
    "PROTOCOL.md",
    "BENCHMARKS.md",
    "docs/OPERATIONS.md",
];

fn commands() -> Vec<clap::Command> {
    vec![
        crate::Cli::command(),
        server::Config::command(),
        provisioner::Config::command(),
    ]
}

/// Every long flag of `command` and its subcommands, with the argument it belongs to.
fn flags(command: &clap::Command, out: &mut Vec<(String, clap::Arg)>) {
    let mut command = command.clone();
    command.build();
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            out.push((format!("{}: --{long}", command.get_name()), arg.clone()));
        }
    }
    for sub in command.get_subcommands() {
        flags(sub, out);
    }
}

/// The `--flag` words of the inline code spans that start with `--` (code blocks are skipped: they quote other
/// tools' commands).
fn named_flags(markdown: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("--") {
                for word in span.split_whitespace().filter(|w| w.starts_with("--")) {
                    let flag = word.split('=').next().unwrap_or(word);
                    named.insert(flag.trim_end_matches([',', '.']).to_owned());
                }
            }
        }
    }
    named
}

#[test]
fn every_flag_the_docs_name_exists() {
    let mut all = Vec::new();
    for command in commands() {
        flags(&command, &mut all);
    }
    let known: BTreeSet<String> = all
        .iter()
        .map(|(name, _)| name.rsplit(": ").next().unwrap_or_default().to_owned())
        .collect();
    let root = crate::process::workspace_root();
    let mut unknown = Vec::new();
    for doc in DOCS {
        let text = std::fs::read_to_string(root.join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"));
        for flag in named_flags(&text) {
            if !known.contains(&flag) {
                unknown.push(format!("{doc}: {flag}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the docs name flags no binary has: {unknown:?}"
    );
}

#[test]
fn every_flag_has_help_text() {
    let mut all = Vec::new();
    for command in commands() {
        flags(&command, &mut all);
    }
    assert!(all.len() > 40, "only {} flags found", all.len());
    let silent: Vec<&String> = all
        .iter()
        .filter(|(_, arg)| {
            arg.get_help()
                .is_none_or(|help| help.to_string().trim().is_empty())
        })
        .map(|(name, _)| name)
        .collect();
    assert!(silent.is_empty(), "flags without help text: {silent:?}");
}

#[test]
fn flag_spans_are_read_and_code_blocks_skipped() {
    let text = "Use `--port 0 --print-port` or `--a=1`, not `cargo run --b`.\n```sh\nhelm --c\n```\n";
    assert_eq!(
        named_flags(text).into_iter().collect::<Vec<_>>(),
        ["--a", "--port", "--print-port"]
    );
}

#[test]
fn ci_builds_with_the_rust_version_cargo_toml_promises() {
    let root = crate::process::workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let version = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("rust-version in the workspace Cargo.toml");
    let ci = std::fs::read_to_string(root.join(".github/workflows/ci.yml")).unwrap_or_default();
    assert!(
        ci.contains(&format!("dtolnay/rust-toolchain@{version}\n")),
        "ci.yml has no job building with rust-version {version}"
    );
    assert!(
        ci.contains(&format!("rust-version = \"{version}\"")),
        "ci.yml checks another version"
    );
}
