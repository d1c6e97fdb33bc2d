//! The code's structure, checked: the folders under `src/` are layers, each importing
//! only from the layers below it, and a step kind is named in its own file and in the
//! kinds table only. See ARCHITECTURE.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import from modules of a lower rank only.
const LAYERS: &[(&str, u32)] = &[
    ("lang", 0),
    ("sys", 1),
    ("artifact", 1),
    ("clients", 2),
    ("kinds", 3),
    ("state", 3),
    ("preview", 4),
    ("lint", 5),
    ("engine", 6),
    ("cli", 7),
];

fn source_files(directory: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(directory).unwrap().map(|entry| entry.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The file's code: comments removed, and a trailing `#[cfg(test)] mod tests` too
/// (unit tests may use the real kinds to test the language on them).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(start) => &text[..start],
        None => text,
    };
    text.lines()
        .map(|line| if line.trim_start().starts_with("//") { "" } else { line })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file of `src/` belongs to (`main.rs` is the command line).
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    match first.as_str() {
        "main.rs" | "lib.rs" => "cli".to_owned(),
        other => other.trim_end_matches(".rs").to_owned(),
    }
}

/// Every `crate::module` (or `dr_plan::module` in `main.rs`) the code names, with its line.
fn imports(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        for prefix in ["crate::", "dr_plan::"] {
            let mut rest = line;
            while let Some(start) = rest.find(prefix) {
                let after = &rest[start + prefix.len()..];
                let name: String = after
                    .chars()
                    .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((name, number + 1));
                }
                rest = after;
            }
        }
    }
    found
}

#[test]
fn every_import_goes_down_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let rank: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut upward = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap();
        let module = module_of(relative);
        let Some(&own) = rank.get(module.as_str()) else {
            panic!("src/{} is in no layer: put it in one of the folders {LAYERS:?}", relative.display());
        };
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        for (imported, line) in imports(&code) {
            let Some(&theirs) = rank.get(imported.as_str()) else { continue };
            if imported != module && theirs >= own {
                upward.push(format!("src/{}:{line}: {module} imports {imported}", relative.display()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up or sideways (the layers, lowest first, are {LAYERS:?}):\n{}",
        upward.join("\n")
    );
}

/// The kinds, as the table in `src/kinds/mod.rs` lists them.
fn kinds_in_table() -> Vec<String> {
    let table =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kinds/mod.rs")).unwrap();
    let start = table.find("kinds! {").expect("the kinds! table");
    let end = start + table[start..].find('}').unwrap();
    table[start + "kinds! {".len()..end]
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `code` holds `needle` not glued to a longer identifier on either side.
fn contains_word(code: &str, needle: &str) -> bool {
    let identifier =
        |character: Option<char>| character.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    code.match_indices(needle).any(|(start, _)| {
        let before = code[..start].chars().next_back();
        let after = code[start + needle.len()..].chars().next();
        let glued_after = needle.ends_with(|c: char| c.is_ascii_alphanumeric()) && identifier(after);
        !identifier(before) && !glued_after
    })
}

#[test]
fn a_kind_is_named_only_in_its_own_file_and_the_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let kinds = kinds_in_table();
    assert_eq!(kinds.len(), 20, "{kinds:?}");
    let mut scattered = Vec::new();
    for module in &kinds {
        let written = format!("\"{}\"", module.replacen('_', ".", 1));
        let written = if module.contains('_') { written } else { format!("\"{module}\"") };
        let variant: String = module
            .split('_')
            .map(|part| {
                let mut characters = part.chars();
                characters
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + characters.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let path = format!("{module}::");
        let own = [format!("kinds/{module}.rs"), format!("kinds/{module}/")];
        let mut naming: Vec<String> = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            if own.iter().any(|own| relative == *own || relative.starts_with(own.as_str())) {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let named = code.contains(&written)
                || contains_word(&code, &path)
                || contains_word(&code, &format!("StepKind::{variant}"));
            if named {
                naming.push(relative);
            }
        }
        if naming.len() > 1 {
            scattered.push(format!("{module} ({written}) is named in {}", naming.join(", ")));
        }
    }
    assert!(
        scattered.is_empty(),
        "a kind is named outside its own file and the table in src/kinds/mod.rs: read its facts from \
         `KindInfo` instead\n{}",
        scattered.join("\n")
    );
}
