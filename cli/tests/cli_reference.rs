//! docs/cli.md documents every flag `--help` lists, and no other.
//!
//! The reference has one section per command, headed `## iomux` (the
//! top level), `## iomux serve`, `## iomux bench` and `## iomux compare`;
//! a section runs to the next `## ` heading. A flag is documented in a
//! section when it appears in the first column of a table row there
//! (`| `-c`, `--conns C` | 100 | ... |`); flags named in prose are
//! references, not documentation.

use std::collections::BTreeSet;
use std::process::Command;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md");

/// The `--xyz` words in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let mut end = start + 2;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'-') {
            end += 1;
        }
        // A flag starts with a letter, and "--" must not be the middle of
        // a longer run of dashes.
        let before_ok =
            start == 0 || !(bytes[start - 1] == b'-' || bytes[start - 1].is_ascii_alphanumeric());
        if before_ok && end > start + 2 && bytes[start + 2].is_ascii_alphabetic() {
            flags.insert(text[start..end].trim_end_matches('-').to_string());
        }
        i = end.max(start + 2);
    }
    flags
}

/// The flags `iomux ARGS --help` lists: the first long flag of each
/// option line (clap indents those by 2 spaces, or by 6 when the option
/// has no short form; descriptions by 10 or more).
fn help_flags(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_iomux"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run iomux --help");
    assert!(
        out.status.success(),
        "iomux {args:?} --help failed: {out:?}"
    );
    let text = String::from_utf8(out.stdout).expect("help is UTF-8");
    let flags: BTreeSet<String> = text
        .lines()
        .filter(|line| line.starts_with("  -") || line.starts_with("      --"))
        .filter_map(|line| long_flags(line).into_iter().next())
        .collect();
    assert!(
        flags.contains("--help"),
        "no --help found in the help of iomux {args:?}; has clap's layout changed?\n{text}"
    );
    flags
}

/// The first cell of a table row (`|` escaped as `\|` stays inside it).
fn first_cell(row: &str) -> Option<&str> {
    let rest = row.trim_start().strip_prefix('|')?;
    let bytes = rest.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The flags documented in the `## HEADING` section of `doc`, or `None`
/// when there is no such section.
fn doc_flags(doc: &str, heading: &str) -> Option<BTreeSet<String>> {
    let mut lines = doc
        .lines()
        .skip_while(|l| l.trim_end() != format!("## {heading}"));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.starts_with("## "))
            .filter_map(first_cell)
            .flat_map(long_flags)
            .collect(),
    )
}

#[test]
fn the_reference_documents_every_flag_of_every_command() {
    let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("reading {DOC}: {e}"));
    let mut problems = Vec::new();
    for (heading, args) in [
        ("iomux", &[][..]),
        ("iomux serve", &["serve"][..]),
        ("iomux bench", &["bench"][..]),
        ("iomux compare", &["compare"][..]),
    ] {
        let listed = help_flags(args);
        let Some(documented) = doc_flags(&doc, heading) else {
            problems.push(format!("docs/cli.md has no `## {heading}` section"));
            continue;
        };
        let missing: Vec<_> = listed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&listed).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "`{heading}`: --help lists {missing:?}, which docs/cli.md does not document"
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "`{heading}`: docs/cli.md documents {extra:?}, which --help does not list"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn flags_are_found_in_help_lines_and_table_cells() {
    assert_eq!(
        long_flags("  -c, --conns <CONNS>  and --max-output-soft"),
        ["--conns", "--max-output-soft"].map(String::from).into()
    );
    assert!(long_flags("---- and -- and --9").is_empty());
    assert_eq!(
        first_cell("| `--mode echo\\|ack` | `echo` | what |"),
        Some(" `--mode echo\\|ack` ")
    );
    assert_eq!(first_cell("plain text with --flag"), None);
}
