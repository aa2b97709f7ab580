//! The map stays true: every repository path the project cites exists (in docs, README, the
//! templates, the code and the patches' headers), `src/lib.rs` lists the modules in
//! docs/ARCHITECTURE.md's layer order, and `use crate::` runs only down that order,
//! with no circle inside a folder. These read the repository's text as data (docs, and the
//! import lines of src/), never to check what the code does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file under `dir` (relative to the root), skipping what git does not hold.
fn walk(dir: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(Path::new(ROOT).join(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{dir}/{name}");
        if ["target", "node_modules", ".build"].contains(&name.as_str()) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            walk(&rel, out);
        } else {
            out.push(rel);
        }
    }
}

// Cited paths ---------------------------------------------------------------------------------

/// The repository's top-level folders a citation starts with, and its top-level files.
const ROOTS: &[&str] = &[
    "src/",
    "tests/",
    "docs/",
    "etc/",
    "bin/",
    "templates/",
    "patches/",
    "cnb/",
    ".github/",
    ".ci/",
];
const TOP_FILES: &[&str] = &[
    "README.md",
    "BENCHMARKS.md",
    "Cargo.toml",
    "Aptfile.example",
];

/// Paths the project cites that live outside this repository, and where: a new one is added
/// here on purpose, so a moved file of ours is never mistaken for one of these.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "bin/start-pgpool",
        "the launcher as both buildpacks install it in the app",
    ),
    (
        "bin/build",
        "the packaged Cloud Native Buildpack (etc/package-cnb)",
    ),
    ("bin/pgpool", "pgpool's installed tree (.build/pgpool/root)"),
    (
        "src/test/regression",
        "pgpool's source: its regression suite",
    ),
    ("tests/*/test.sh", "pgpool's regression suite"),
    ("src/parser", "pgpool's source"),
    ("src/utils", "pgpool's source"),
];

/// pgpool's C sources (`src/protocol/pool_proto_modules.c`), which the patches and the notes on
/// pgpool cite by their path in pgpool's tree: this repository holds no C (a test says so).
fn in_pgpools_source(cited: &str) -> bool {
    [".c", ".h", ".l", ".y"].iter().any(|e| cited.ends_with(e))
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-./*<>".contains(c)
}

/// The repository paths `text` cites: a root folder followed by a path, or a top-level file,
/// not inside a longer path or word. `<name>` stands for any one name, as `*` does.
fn citations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.char_indices() {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || "_-./$}{".contains(c)) {
            continue;
        }
        let rest = &text[i..];
        if ROOTS.iter().any(|r| rest.starts_with(r)) {
            let end = rest.find(|c| !path_char(c)).unwrap_or(rest.len());
            let p = rest[..end].trim_end_matches(['.', '-', '<']);
            // A lone root folder (`etc/`) is a citation of the folder.
            out.push(p.to_string());
        } else if let Some(f) = TOP_FILES.iter().find(|f| rest.starts_with(**f)) {
            let after = rest[f.len()..].chars().next();
            if !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(f.to_string());
            }
        }
    }
    out
}

/// `pattern` matches `name`: `*` or `<...>` stand for any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    let mut p = String::new();
    let mut in_angle = false;
    for c in pattern.chars() {
        match c {
            '<' => {
                in_angle = true;
                p.push('*');
            }
            '>' => in_angle = false,
            _ if in_angle => {}
            c => p.push(c),
        }
    }
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Some file or folder of the repository is at `cited` (wildcards matched per component).
fn exists(cited: &str) -> bool {
    let mut here = vec![PathBuf::from(ROOT)];
    for comp in cited.trim_end_matches('/').split('/') {
        let mut next = Vec::new();
        for dir in &here {
            if !comp.contains(['*', '<']) {
                let p = dir.join(comp);
                if p.exists() {
                    next.push(p);
                }
                continue;
            }
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if matches(comp, &e.file_name().to_string_lossy()) {
                    next.push(e.path());
                }
            }
        }
        here = next;
    }
    !here.is_empty()
}

#[test]
fn citations_are_read_whole() {
    let t = "see `src/watch/stuck/` and tests/suite/families.rs, etc/test. Not /usr/src/x \
             nor $HOME/etc/y; README.md's table; tests/golden/pgpool-<family>.conf; patches/*.patch";
    assert_eq!(
        citations(t),
        [
            "src/watch/stuck/",
            "tests/suite/families.rs",
            "etc/test",
            "README.md",
            "tests/golden/pgpool-<family>.conf",
            "patches/*.patch"
        ]
    );
    assert!(exists("tests/golden/pgpool-<family>.conf"));
    assert!(exists("patches/*.patch"));
    assert!(exists("src/"));
    assert!(!exists("tests/golden/pgpool-<family>.toml"));
    assert!(matches("pgpool-*.conf", "pgpool-4.7.conf"));
    assert!(!matches("pgpool-*.conf", "pgpool-4.7.confx"));
}

#[test]
fn every_cited_repository_path_exists() {
    let mut files: Vec<String> = TOP_FILES.iter().map(|f| f.to_string()).collect();
    for dir in [
        "docs",
        "src",
        "templates",
        "etc",
        "bin",
        "cnb",
        "tests",
        ".github",
        ".ci",
        "patches",
    ] {
        walk(dir, &mut files);
    }
    assert!(
        !files.iter().any(|f| in_pgpools_source(f)),
        "a C source in the repository: in_pgpools_source can no longer tell pgpool's apart"
    );
    // Golden files repeat the template; the regressions file is proptest's; lint's pins are
    // npm's; this file's own examples are not citations.
    files.retain(|f| {
        !(f.starts_with("tests/golden/")
            || f.starts_with("tests/proptest-regressions/")
            || f.starts_with("etc/lint/")
            || f == "tests/suite/map.rs")
    });
    let mut missing = BTreeMap::<String, BTreeSet<String>>::new();
    for f in &files {
        let Ok(mut text) = std::fs::read_to_string(Path::new(ROOT).join(f)) else {
            continue;
        };
        // A patch's header is ours; the diff below it is pgpool's tree.
        if f.ends_with(".patch") {
            let end = ["\ndiff --git ", "\n--- a/", "\nIndex: "]
                .iter()
                .filter_map(|m| text.find(m))
                .min()
                .unwrap_or(text.len());
            text.truncate(end);
        }
        for cited in citations(&text) {
            let elsewhere = ELSEWHERE.iter().any(|(p, _)| *p == cited);
            if elsewhere || in_pgpools_source(&cited) || exists(&cited) {
                continue;
            }
            missing.entry(cited).or_default().insert(f.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "paths cited that are not in the repository (fix the citation, or add a path that lives \
         elsewhere to ELSEWHERE in tests/suite/map.rs):\n{}",
        missing
            .iter()
            .map(|(p, fs)| format!(
                "  {p}  (in {})",
                fs.iter().cloned().collect::<Vec<_>>().join(", ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (p, _) in ELSEWHERE {
        assert!(
            !exists(p),
            "{p} is listed as living elsewhere, but the repository has it"
        );
    }
}

// Layers --------------------------------------------------------------------------------------

/// docs/ARCHITECTURE.md's table "The folders, top to bottom": each row's `src/` modules, top
/// row first (a row may hold several: the leaves).
fn layers() -> Vec<Vec<String>> {
    let doc = read("docs/ARCHITECTURE.md");
    let table = doc
        .split_once("## The folders, top to bottom")
        .expect("docs/ARCHITECTURE.md: '## The folders, top to bottom'")
        .1;
    let mut rows = Vec::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let first = line.split('|').nth(1).unwrap_or("");
        let mods: Vec<String> = first
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|p| p.strip_prefix("src/"))
            .filter(|p| *p != "main.rs")
            .map(|p| {
                // `src/log/events.rs` is a file of the `log` module.
                let top = p.split('/').next().unwrap();
                top.trim_end_matches(".rs").to_string()
            })
            .fold(Vec::new(), |mut row, m| {
                if !row.contains(&m) {
                    row.push(m);
                }
                row
            });
        if !mods.is_empty() {
            rows.push(mods);
        }
    }
    assert!(
        rows.len() > 3,
        "no layer table found in docs/ARCHITECTURE.md"
    );
    rows
}

#[test]
fn lib_rs_lists_the_modules_in_layer_order() {
    let rows = layers();
    let lib: Vec<String> = read("src/lib.rs")
        .lines()
        .filter_map(|l| {
            let l = l
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    // Row by row from the top; inside a row (the leaves) rustfmt's order is as good as any.
    let row_of = |m: &String| rows.iter().position(|r| r.contains(m));
    let order: Vec<Option<usize>> = lib.iter().map(row_of).collect();
    let mut sorted = lib.clone();
    sorted.sort_by_key(|m| row_of(m));
    assert!(
        !order.contains(&None) && sorted == lib,
        "src/lib.rs lists {lib:?}; docs/ARCHITECTURE.md's table, from the top: {rows:?}"
    );
    let mut in_lib = lib.clone();
    in_lib.sort();
    let mut in_table = rows.concat();
    in_table.sort();
    assert_eq!(in_lib, in_table, "src/lib.rs's modules against the table's");
}

/// A source file's module path: `src/watch/stuck/mod.rs` is `watch::stuck`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap().trim_end_matches(".rs");
    let mut m: Vec<String> = rel.split('/').map(str::to_string).collect();
    if m.last().is_some_and(|l| l == "mod") {
        m.pop();
    }
    m
}

/// The modules `file` (module `me`) names through `crate::`, `super::`, `self::`, or (in a
/// folder's mod.rs) a child module's own name; a path resolves to the longest known module.
/// Its `#[cfg(test)]` part and comments are not read: tests may reach anywhere.
fn imports(
    text: &str,
    me: &[String],
    is_folder: bool,
    known: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let children: Vec<&String> = known
        .iter()
        .filter(|m| m.len() == me.len() + 1 && m.starts_with(me))
        .map(|m| m.last().unwrap())
        .collect();
    let mut out = BTreeSet::new();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (n, line) in lines.iter().enumerate() {
        // The test module ends the file by convention; a `#[cfg(test)]` item elsewhere is read.
        let next = lines[n + 1..].iter().find(|l| !l.is_empty());
        if line.starts_with("#[cfg(test)]") && next.is_some_and(|l| l.starts_with("mod ")) {
            break;
        }
        if line.starts_with("//") || line.starts_with("mod ") || line.starts_with("pub mod ") {
            continue;
        }
        // A folder's mod.rs re-exports its own children for the callers' sake.
        let reexport = ["pub use ", "pub(crate) use "]
            .iter()
            .find_map(|p| line.strip_prefix(p));
        if is_folder
            && reexport.is_some_and(|r| {
                r.starts_with("self::")
                    || children.iter().any(|c| {
                        r.strip_prefix(c.as_str())
                            .is_some_and(|t| t.starts_with("::"))
                    })
            })
        {
            continue;
        }
        let code = line.split("//").next().unwrap();
        for (i, _) in code.char_indices() {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[i..];
            let (mut path, tail) = if let Some(t) = rest.strip_prefix("crate::") {
                (Vec::new(), t)
            } else if let Some(t) = rest.strip_prefix("self::") {
                (me.to_vec(), t)
            } else if rest.starts_with("super::") {
                let mut path = me.to_vec();
                let mut t = rest;
                while let Some(r) = t.strip_prefix("super::") {
                    path.pop();
                    t = r;
                }
                (path, t)
            } else if let Some(c) = children.iter().find(|c| {
                rest.strip_prefix(c.as_str())
                    .is_some_and(|r| r.starts_with("::"))
            }) {
                let mut p = me.to_vec();
                p.push(c.to_string());
                (p, rest[c.len()..].trim_start_matches("::"))
            } else {
                continue;
            };
            // `crate::{a, b::c}`: each name in the braces.
            let names: Vec<String> = if let Some(group) = tail.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                inner.split(',').map(|s| s.trim().to_string()).collect()
            } else {
                vec![tail.to_string()]
            };
            let base = std::mem::take(&mut path);
            for name in names {
                let mut p = base.clone();
                let mut best = base.clone();
                for seg in name.split("::") {
                    let seg: String = seg
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if seg.is_empty() {
                        break;
                    }
                    p.push(seg);
                    if known.contains(&p) {
                        best = p.clone();
                    }
                }
                if !best.is_empty() && best != me {
                    out.insert(best);
                }
            }
        }
    }
    out
}

#[test]
fn imports_only_go_down_the_layers_and_never_in_a_circle() {
    let rows = layers();
    let layer_of = |top: &str| rows.iter().position(|r| r.iter().any(|m| m == top));
    let mut files = Vec::new();
    walk("src", &mut files);
    files.retain(|f| f.ends_with(".rs") && f != "src/main.rs" && f != "src/lib.rs");
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut wrong = Vec::new();
    // Per folder, the arrows between its rooms (a file, or a subfolder as a whole; "" is the
    // folder's own mod.rs).
    let mut arrows: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for f in &files {
        let me = module_of(f);
        let Some(my_layer) = layer_of(&me[0]) else {
            wrong.push(format!(
                "{f}: its module {} is in no row of the table",
                me[0]
            ));
            continue;
        };
        let is_folder = f.ends_with("/mod.rs");
        for target in imports(&read(f), &me, is_folder, &known) {
            match layer_of(&target[0]) {
                None => wrong.push(format!("{f}: uses {}, in no row", target.join("::"))),
                Some(l) if l < my_layer => wrong.push(format!(
                    "{f} ({}) uses crate::{} ({}), which is above it",
                    me[0],
                    target.join("::"),
                    target[0]
                )),
                _ => {}
            }
            let common = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let room = |m: &[String]| m.get(common).cloned().unwrap_or_default();
            arrows
                .entry(me[..common].to_vec())
                .or_default()
                .insert((room(&me), room(&target)));
        }
    }
    for (folder, edges) in &arrows {
        if let Some(circle) = find_circle(edges) {
            wrong.push(format!(
                "a circle in src/{}: {}",
                folder.join("/"),
                circle.join(" -> ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against docs/ARCHITECTURE.md's layers:\n{}",
        wrong.join("\n")
    );
}

/// A circle among `edges`, as the rooms along it, if there is one.
fn find_circle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeSet<(String, String)>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for (_, to) in edges.iter().filter(|(from, _)| from == n) {
            if let Some(c) = visit(to, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for (from, _) in edges {
        if let Some(c) = visit(from, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_import_reader_resolves_paths_and_finds_circles() {
    let known: BTreeSet<Vec<String>> = [
        vec!["watch"],
        vec!["watch", "events"],
        vec!["watch", "repair"],
        vec!["watch", "repair", "lost_copy"],
        vec!["pgpool"],
        vec!["pgpool", "sql"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    let me: Vec<String> = vec!["watch".into(), "repair".into()];
    let text = "use crate::pgpool::sql::{self, Node};\nuse super::events;\n\
                #[cfg(test)]\nfn only_in_tests() {}\npub use crate::pgpool::Release;\n\
                pub use lost_copy::Rule;\n\
                fn f() { lost_copy::next(); crate::pgpool::Files::new(); }\n\
                // crate::watch::nothing\n#[cfg(test)]\nmod tests {\nuse crate::launch;\n}\n";
    let got: Vec<String> = imports(text, &me, true, &known)
        .into_iter()
        .map(|m| m.join("::"))
        .collect();
    assert_eq!(
        got,
        [
            "pgpool",
            "pgpool::sql",
            "watch::events",
            "watch::repair::lost_copy"
        ]
    );
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
    assert_eq!(find_circle(&edges).unwrap(), ["a", "b", "c", "a"]);
    let line: BTreeSet<(String, String)> = [("a", "b"), ("b", "c")]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect();
    assert_eq!(find_circle(&line), None);
}

// The names ARCHITECTURE.md uses --------------------------------------------------------------

/// docs/ARCHITECTURE.md also names files by their path inside `src/`, `tests/` or `cnb/src/`
/// (`os/proc.rs`, `stale_follower.rs`, `suite/map.rs`) and code by its Rust path
/// (`repair::log`, `Settings::from_env`): each file must exist, and the last name of each path
/// must be defined somewhere in the code (`X` and `FOO` stand for any).
#[test]
fn architecture_names_files_and_items_that_exist() {
    let doc = read("docs/ARCHITECTURE.md");
    let mut code = Vec::new();
    for dir in ["src", "tests", "cnb/src"] {
        walk(dir, &mut code);
    }
    code.retain(|f| f.ends_with(".rs"));
    let texts: Vec<String> = code.iter().map(|f| read(f)).collect();
    let mut missing = Vec::new();
    for token in doc.split('`').skip(1).step_by(2) {
        let rooted = ROOTS.iter().any(|r| token.starts_with(r));
        if !rooted && (token.ends_with(".rs") || token.ends_with('/')) && !token.contains(' ') {
            let tail = format!("/{}", token.trim_end_matches('/'));
            let found = code.iter().any(|f| {
                f.ends_with(&tail)
                    || Path::new(f)
                        .parent()
                        .is_some_and(|d| d.ends_with(&tail[1..]))
            });
            let elsewhere = ["", "src/", "tests/", "cnb/src/", "etc/"]
                .iter()
                .any(|r| exists(&format!("{r}{token}")));
            if !found && !elsewhere {
                missing.push(format!("file {token}"));
            }
        } else if token.contains("::") && !token.starts_with("use ") {
            let path = token.split(['(', '!', ' ']).next().unwrap();
            let last = path.rsplit("::").next().unwrap();
            if last.is_empty() || ["X", "FOO"].contains(&last) {
                continue;
            }
            if !texts.iter().any(|t| defines(t, last))
                && !code.iter().any(|f| names_module(f, last))
            {
                missing.push(format!("item {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names what the code does not have:\n{}",
        missing.join("\n")
    );
}

#[test]
fn definitions_are_found_by_their_whole_name() {
    let text = "pub fn log(x: u8) {}\nstruct Repairs;\nmacro_rules! settings {}\n";
    assert!(defines(text, "log") && defines(text, "Repairs") && defines(text, "settings"));
    assert!(!defines(text, "lo") && !defines(text, "logs") && !defines(text, "Repair"));
    assert!(names_module("src/watch/repair/mod.rs", "repair"));
    assert!(names_module("tests/support/l2met.rs", "l2met"));
    assert!(!names_module("src/watch/repair/mod.rs", "watch"));
}

/// `text` defines `name`: a fn, type, const, static, module or macro of that name.
fn defines(text: &str, name: &str) -> bool {
    let kinds = [
        "fn ",
        "struct ",
        "enum ",
        "trait ",
        "type ",
        "const ",
        "static ",
        "mod ",
        "macro_rules! ",
    ];
    kinds.iter().any(|k| {
        text.match_indices(&format!("{k}{name}")).any(|(i, m)| {
            let after = text[i + m.len()..].chars().next();
            !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// `file` is the module `name` (`src/watch/repair/mod.rs` is `repair`, `tests/support/l2met.rs`
/// is `l2met`).
fn names_module(file: &str, name: &str) -> bool {
    let p = Path::new(file);
    let stem = p.file_stem().unwrap().to_string_lossy();
    if stem == "mod" || stem == "main" {
        p.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d == name)
    } else {
        stem == name
    }
}
