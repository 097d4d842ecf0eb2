//! docs/c-api.md is generated from the header's comments, so the reference a POS developer
//! reads can never drift from the header they compile against. Regenerate with
//! `FO_BLESS=1 cargo test --features sim --test docs` (after the header: `--test header`).
//! The docs must stand alone: no link may point outside the repository.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Drops references to documents that are not in the repository.
fn standalone(text: &str) -> String {
    let mut out = text.to_string();
    for (from, to) in [(" (CONTRACT §", ")"), ("; CONTRACT §", ")")] {
        while let Some(at) = out.find(from) {
            let Some(len) = out[at + from.len()..].find(to) else {
                break;
            };
            let end = at + from.len() + len + if from.starts_with(';') { 0 } else { 1 };
            out.replace_range(at..end, "");
        }
    }
    out.replace(" and CONTRACT.md", "")
        .replace("CONTRACT.md", "README.md")
}

fn comment_text(lines: &[&str]) -> String {
    let body: Vec<String> = lines
        .iter()
        .map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("//").unwrap_or(l);
            l.strip_prefix(' ').unwrap_or(l).to_string()
        })
        .collect();
    // "# Safety" is rustdoc's heading; in the reference it is a bold line.
    let text = body.join("\n").replace("# Safety", "**Safety**:");
    standalone(&text)
}

/// Turns "Results: …" / "Threads: …" paragraphs into bold labels, leaving the rest as written.
fn labelled(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for label in ["Results:", "Threads:", "Blocks:", "Pointers:", "Errors:"] {
            if let Some(rest) = l.strip_prefix(label) {
                // Its own paragraph.
                if !out.is_empty() && !out.ends_with("\n\n") {
                    out.push('\n');
                }
                l = format!("**{}**{rest}", label);
                break;
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn generate(header: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "# C API reference\n\n\
         Generated from the comments of `include/flow_omnium.h` (themselves generated from \
         `src/ffi` by cbindgen); do not edit. Regenerate with \
         `FO_BLESS=1 cargo test --features sim --test docs`.\n\n\
         Include `flow_omnium.h` and link `-lflow_omnium` (see the README's \"Packaging\" for \
         pkg-config and CMake). Every call is synchronous; the library runs one background \
         sync thread per client. How a POS uses these calls: [integration.md](integration.md); \
         the configuration JSON: [configuration.md](configuration.md).\n\n",
    );
    // The rules for every function: the header's opening comment.
    if let (Some(start), Some(end)) = (header.find("/*"), header.find("*/")) {
        let block = &header[start + 2..end];
        let lines: Vec<String> = block
            .lines()
            .map(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix('*').unwrap_or(l);
                l.strip_prefix(' ').unwrap_or(l).to_string()
            })
            .collect();
        // Its first lines name the library and point here; the rules start after them.
        let lines: Vec<String> = lines
            .into_iter()
            .skip_while(|l| !l.starts_with("Rules for every function"))
            .skip(1)
            .skip_while(|l| !l.starts_with("- "))
            .collect();
        let text = standalone(lines.join("\n").trim());
        out.push_str("## Rules for every function\n\n");
        out.push_str(&text);
        out.push_str("\n\n");
    }
    // Version macros.
    let macros: Vec<&str> = header
        .lines()
        .filter(|l| l.starts_with("#define FO_VERSION"))
        .collect();
    if !macros.is_empty() {
        out.push_str("## Version\n\n```c\n");
        for m in &macros {
            out.push_str(m);
            out.push('\n');
        }
        out.push_str(
            "```\n\nThe crate version at compile time; `fo_version()` gives the linked \
             library's at run time.\n\n",
        );
    }
    // Result codes.
    let lines: Vec<&str> = header.lines().collect();
    let mut i = 0;
    let mut comment: Vec<&str> = Vec::new();
    let mut types = String::new();
    let mut functions = String::new();
    let mut codes = String::new();
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.starts_with("//") && !t.starts_with("// __cplusplus") {
            comment.push(line);
            i += 1;
            continue;
        }
        if t.starts_with("typedef enum fo_result") {
            types.push_str(&format!(
                "### `fo_result`\n\n{}\n\n| code | value | meaning |\n|---|---|---|\n",
                comment_text(&comment)
            ));
            comment.clear();
            i += 1;
            let mut member_doc: Vec<&str> = Vec::new();
            while i < lines.len() && !lines[i].starts_with('}') {
                let m = lines[i].trim();
                if m.starts_with("//") {
                    member_doc.push(m);
                } else if let Some((name, value)) = m.trim_end_matches(',').split_once(" = ") {
                    codes.push_str(&format!(
                        "| `{name}` | {value} | {} |\n",
                        comment_text(&member_doc).replace('\n', " ")
                    ));
                    member_doc.clear();
                }
                i += 1;
            }
            types.push_str(&codes);
            types.push('\n');
            i += 1;
            continue;
        }
        if t.starts_with("typedef ") {
            let name = t
                .trim_end_matches(';')
                .rsplit([' ', '*', '('])
                .find(|s| s.starts_with("fo_"))
                .unwrap_or("")
                .trim_end_matches(')')
                .to_string();
            let name = if name.is_empty() {
                t.split_whitespace()
                    .find(|w| w.starts_with("(*fo_"))
                    .map(|w| w.trim_start_matches("(*").trim_end_matches(')').to_string())
                    .unwrap_or_default()
            } else {
                name
            };
            types.push_str(&format!(
                "### `{name}`\n\n```c\n{t}\n```\n\n{}\n\n",
                comment_text(&comment)
            ));
            comment.clear();
            i += 1;
            continue;
        }
        let is_decl = !comment.is_empty()
            && !t.is_empty()
            && !t.starts_with('#')
            && !t.starts_with('}')
            && !t.starts_with("extern")
            && t.contains("fo_")
            && t.contains('(');
        if is_decl {
            let mut decl = vec![line];
            while !decl.last().unwrap().trim_end().ends_with(';') && i + 1 < lines.len() {
                i += 1;
                decl.push(lines[i]);
            }
            let signature = decl.join("\n");
            let name: String = signature[..signature.find('(').unwrap()]
                .rsplit([' ', '*'])
                .next()
                .unwrap_or("")
                .to_string();
            functions.push_str(&format!(
                "### `{name}`\n\n```c\n{signature}\n```\n\n{}\n",
                labelled(&comment_text(&comment))
            ));
            comment.clear();
            i += 1;
            continue;
        }
        if !t.starts_with("//") {
            comment.clear();
        }
        i += 1;
    }
    out.push_str("## Types\n\n");
    out.push_str(&types);
    out.push_str("## Functions\n\n");
    out.push_str(&functions);
    out
}

#[test]
fn c_api_reference_matches_the_header() {
    let header = std::fs::read_to_string(root().join("include/flow_omnium.h")).unwrap();
    let generated = generate(&header);
    // Every export of the header is in the reference.
    for line in header.lines() {
        if let Some(open) = line
            .find("fo_")
            .filter(|_| line.contains('(') && line.ends_with(';'))
        {
            let name: String = line[open..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !line.trim_start().starts_with("//") && !line.starts_with("typedef") {
                assert!(
                    generated.contains(&format!("### `{name}`")),
                    "{name} is missing from the generated reference"
                );
            }
        }
    }
    let path = root().join("docs/c-api.md");
    if std::env::var_os("FO_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/c-api.md differs from what the header generates; regenerate it with: \
         FO_BLESS=1 cargo test --features sim --test docs"
    );
}

/// README and docs/ stand alone: every relative link resolves inside the repository, and
/// none names the project's shared folder or its contract file.
#[test]
fn docs_and_readme_link_only_inside_the_repository() {
    let mut files = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        assert!(
            !text.contains("../shared") && !text.contains("CONTRACT.md"),
            "{name} sends readers outside the repository"
        );
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let target: String = rest[at + 2..].chars().take_while(|c| *c != ')').collect();
            rest = &rest[at + 2..];
            if target.starts_with("http") || target.starts_with('#') || target.is_empty() {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = file.parent().unwrap().join(path);
            assert!(
                resolved.exists(),
                "{name} links to {target}, which is not in the repository"
            );
            let canon = resolved.canonicalize().unwrap();
            assert!(
                canon.starts_with(root().canonicalize().unwrap()),
                "{name} links outside the repository: {target}"
            );
        }
    }
}
