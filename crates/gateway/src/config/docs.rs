//! `.env.example` and the README's configuration tables, generated from the table of
//! variables. A test compares them with the committed files;
//! `cargo test -p mpesa-gateway --lib config::docs::tests::write -- --ignored` rewrites them.
//!
//! In README.md a table sits between `<!-- config-table: SECTION… -->` and
//! `<!-- config-table-end -->` (sections by [`Section::key`]); the rest of the file is prose.

use super::variables::{ReadBy, Secret, Section, VARIABLES, Var, WhenUnset};

const WIDTH: usize = 99;
const TABLE_START: &str = "<!-- config-table:";
const TABLE_END: &str = "<!-- config-table-end -->";

const ENV_PREAMBLE: &str = "\
# mpesa-gateway configuration: copy to `.env` (docker compose, or `serve` in this directory) or to
# /etc/mpesa-gateway/env (systemd, mode 0600), then fill it in. Every variable the binary reads is
# listed; commented-out lines show the default or an example and are not in effect.
#
# Format: one NAME=value per line, comments on their own lines only (systemd and docker compose do
# not strip comments after a value), no quotes needed. Blank values count as unset.
#
# Secrets are marked [secret]: never commit them, and keep this file readable by the service
# only. The gateway never logs or displays them (`mpesa-gateway config check` shows them masked).
#
# Generated from crates/gateway/src/config/variables.rs: change the table there, not this file.
";

/// The whole of `.env.example`.
pub fn env_example() -> String {
    let mut out = String::from(ENV_PREAMBLE);
    for section in Section::ALL {
        let vars: Vec<&Var> = VARIABLES.iter().filter(|v| v.section == section).collect();
        if vars.is_empty() {
            continue;
        }
        let heading = format!("# --- {} ", section.title());
        let dashes = WIDTH.saturating_sub(heading.chars().count());
        out.push_str(&format!("\n{heading}{}\n\n", "-".repeat(dashes)));
        for var in vars {
            env_entry(&mut out, var);
        }
    }
    out
}

fn env_entry(out: &mut String, var: &Var) {
    let mut comment = var.help.to_owned();
    if let WhenUnset::Means(what) = var.when_unset
        && !what.is_empty()
    {
        comment.push_str(&format!(" Default: {what}."));
    }
    if !var.aliases.is_empty() {
        comment.push_str(&format!(" Also read as {}.", var.aliases.join(", ")));
    }
    comment.push_str(match var.secret {
        Secret::No => "",
        Secret::InUrl => " [secret: its password and query]",
        Secret::Yes | Secret::Identifier => " [secret]",
    });
    for line in wrap(&comment, WIDTH - 2) {
        out.push_str(&format!("# {line}\n"));
    }
    let default = match var.when_unset {
        WhenUnset::Value(v) => v,
        WhenUnset::Means(_) => "",
    };
    let shown = var
        .active
        .or_else(|| var.examples.first().copied())
        .unwrap_or(default);
    match var.active {
        Some(value) => out.push_str(&format!("{}={value}\n", var.name)),
        None if var.examples.is_empty() => out.push_str(&format!("# {}={default}\n", var.name)),
        None => {
            for example in var.examples {
                out.push_str(&format!("# {}={example}\n", var.name));
            }
        }
    }
    for alias in var.aliases {
        out.push_str(&format!("# {alias}={shown}\n"));
    }
}

/// Words joined into lines of at most `width` characters (a longer word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The Markdown table of the variables of `sections`, in the table's order.
pub fn readme_table(sections: &[Section]) -> String {
    let mut out = String::from("| variable | meaning | default |\n| --- | --- | --- |\n");
    for var in VARIABLES.iter().filter(|v| sections.contains(&v.section)) {
        let mut name = format!("`{}`", var.name);
        if !var.aliases.is_empty() {
            let aliases: Vec<String> = var.aliases.iter().map(|a| format!("`{a}`")).collect();
            name.push_str(&format!(" (or {})", aliases.join(", ")));
        }
        let mut meaning = var.help.to_owned();
        meaning.push_str(match var.secret {
            Secret::No => "",
            Secret::InUrl => " Its password and query are secret.",
            Secret::Yes | Secret::Identifier => " Secret.",
        });
        let default = match var.when_unset {
            WhenUnset::Value(v) => format!("`{v}`"),
            WhenUnset::Means(what) => what.to_owned(),
        };
        out.push_str(&format!(
            "| {name} | {} | {} |\n",
            cell(&meaning),
            cell(&default)
        ));
    }
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// README.md with every generated table brought up to date; an error for a marker naming an
/// unknown section, a table without its end, or a section of the gateway's own variables that no
/// table shows.
pub fn readme(current: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = current;
    let mut shown: Vec<Section> = Vec::new();
    while let Some(start) = rest.find(TABLE_START) {
        let line_end = rest[start..]
            .find('\n')
            .map(|i| start + i + 1)
            .ok_or("a config-table marker at the end of README.md")?;
        let marker = &rest[start..line_end];
        let keys = marker[TABLE_START.len()..]
            .trim()
            .strip_suffix("-->")
            .ok_or_else(|| format!("{marker:?} does not end with -->"))?;
        let mut sections = Vec::new();
        for key in keys.split_whitespace() {
            let section = Section::ALL
                .into_iter()
                .find(|s| s.key() == key)
                .ok_or_else(|| format!("{marker:?}: no section {key:?}"))?;
            sections.push(section);
        }
        let end = rest[line_end..]
            .find(TABLE_END)
            .map(|i| line_end + i)
            .ok_or_else(|| format!("{marker:?} has no {TABLE_END}"))?;
        out.push_str(&rest[..line_end]);
        out.push_str(&readme_table(&sections));
        shown.extend(sections);
        rest = &rest[end..];
    }
    out.push_str(rest);
    for var in VARIABLES.iter().filter(|v| v.read_by == ReadBy::Config) {
        if !shown.contains(&var.section) {
            return Err(format!(
                "{} (section {}) is in no config-table of README.md",
                var.name,
                var.section.key()
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn repo_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(name)
    }

    const REGENERATE: &str =
        "cargo test -p mpesa-gateway --lib config::docs::tests::write -- --ignored";

    fn expected_readme() -> String {
        let current = std::fs::read_to_string(repo_file("README.md")).unwrap();
        readme(&current).unwrap()
    }

    /// Fails when `file` is not `expected`, naming the first line that differs.
    fn check_generated(file: &str, expected: &str) {
        let current = std::fs::read_to_string(repo_file(file)).unwrap();
        if current == expected {
            return;
        }
        let line = current
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(expected.lines().count()));
        panic!(
            "{file} is not what the table of variables makes (line {}: {:?} instead of {:?}). \
             Run `{REGENERATE}` and commit the result.",
            line + 1,
            current.lines().nth(line).unwrap_or(""),
            expected.lines().nth(line).unwrap_or(""),
        );
    }

    #[test]
    fn env_example_is_generated_from_the_table() {
        check_generated(".env.example", &env_example());
    }

    #[test]
    fn readme_tables_are_generated_from_the_table() {
        check_generated("README.md", &expected_readme());
    }

    /// Not a test: regenerates `.env.example` and the README's tables (see `REGENERATE`).
    #[test]
    #[ignore]
    fn write() {
        let readme = expected_readme();
        std::fs::write(repo_file(".env.example"), env_example()).unwrap();
        std::fs::write(repo_file("README.md"), readme).unwrap();
    }

    #[test]
    fn a_readme_without_a_section_is_refused() {
        let err = readme("<!-- config-table: daraja -->\n<!-- config-table-end -->\n").unwrap_err();
        assert!(err.contains("is in no config-table"), "{err}");
        let err = readme("<!-- config-table: nonsense -->\n").unwrap_err();
        assert!(err.contains("no section"), "{err}");
    }

    #[test]
    fn the_table_is_rendered() {
        let table = readme_table(&[Section::Daraja]);
        assert!(
            table.contains("| `MPESA_BUSINESS_SHORT_CODE` (or `MPESA_SHORTCODE`) | The paybill")
        );
        assert!(table.contains("| `MPESA_TIMEOUT_SECS` | Seconds one Daraja request may take, answer included. | `30` |"));
        assert!(!table.contains("RECONCILE_AFTER_SECS"));
        let env = env_example();
        assert!(env.contains("\n# RECONCILE_AFTER_SECS=60\n"));
        assert!(env.contains("\nMPESA_BUSINESS_SHORT_CODE=174379\n# MPESA_SHORTCODE=174379\n"));
        for line in env.lines() {
            assert!(
                line.chars().count() <= WIDTH || !line.trim_start_matches("# ").contains(' '),
                "not wrapped: {line}"
            );
        }
    }
}
