//! docs/READING.md stays true: every source path it names exists, and every function, method or type
//! it names in backticks is defined in `src/` (a rename that forgets the guide fails here).

use std::path::Path;

/// Every `src/…` path and every backticked name that looks like code (`name`, `Type::name`).
fn named(guide: &str) -> (Vec<String>, Vec<String>) {
    let mut paths = Vec::new();
    let mut names = Vec::new();
    for (i, piece) in guide.split('`').enumerate() {
        if i % 2 == 0 {
            continue; // outside backticks
        }
        if piece.starts_with("src/") {
            paths.push(piece.trim_end_matches('/').to_string());
        } else if !piece.contains(' ')
            && !piece.contains('.')
            && piece.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            names.push(piece.rsplit("::").next().unwrap_or(piece).to_string());
        }
    }
    (paths, names)
}

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

#[test]
fn every_path_and_name_the_reading_guide_gives_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/READING.md")).expect("docs/READING.md");
    let (paths, names) = named(&guide);
    assert!(
        paths.len() > 20 && names.len() > 40,
        "the guide names its paths and functions"
    );
    for path in &paths {
        assert!(
            root.join(path).exists(),
            "docs/READING.md names {path}, which does not exist"
        );
    }
    let mut code = String::new();
    sources(&root.join("src"), &mut code);
    let defined = |name: &str| {
        ["fn ", "struct ", "enum ", "trait ", "mod "]
            .iter()
            .any(|kind| code.contains(&format!("{kind}{name}(")) || code.contains(&format!("{kind}{name} ")) || code.contains(&format!("{kind}{name}<")) || code.contains(&format!("{kind}{name};")))
            || code.contains(&format!("    {name}(")) // an enum variant that carries data
            || code.contains(&format!("    {name},")) // a unit variant
            || code.contains(&format!("    {name} {{"))
    };
    // Names of the standard library the guide uses in passing (and one-letter names of members).
    let std_names = ["Ord"];
    for name in names.iter().filter(|n| n.len() > 2 && !std_names.contains(&n.as_str())) {
        assert!(
            defined(name),
            "docs/READING.md names `{name}`, which src/ does not define"
        );
    }
}
