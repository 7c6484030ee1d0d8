//! `cargo xtask maps`: the maps are true. Every path, type and function that ARCHITECTURE.md,
//! README.md, BENCHMARKS.md and the manuals in `docs/` name in backticks exists, and no file of the project's crates imports a file
//! that imports it back (the import graph between files has no circle). Run by `cargo test`
//! too (the tests below), so a rename that makes a map false fails before it lands.
//!
//! Imports are read as text: `use` declarations and paths in code (`crate::`, `super::`,
//! `self::`, a child module's name), tests and comments left out. A file naming an item of an
//! enclosing module (`super::Fault` in a child of `zstd/mod.rs`) is the module idiom, not an
//! import edge: a parent declares its children.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::workspace_root;

/// The documents whose names are checked.
const MAPS: [&str; 7] = [
    "ARCHITECTURE.md",
    "README.md",
    "BENCHMARKS.md",
    "docs/tool.md",
    "docs/pack.md",
    "docs/library.md",
    "docs/c-api.md",
];

/// The source roots of the crates whose files must not import each other in a circle.
const CRATES: [&str; 8] = [
    "core/format/src",
    "core/runtime/src",
    "shell/src",
    "shell/tool/src",
    "shell/tool/src/bin/smf",
    "xtask/src",
    "tests/src",
    "nolibc/src",
];

pub(crate) fn run_command() -> Result<(), String> {
    let root = workspace_root();
    let mut problems = missing_names(&root)?;
    problems.extend(circles(&root)?.iter().map(|circle| format!("import circle: {}", circle.join(" -> "))));
    if problems.is_empty() {
        println!("maps: every name exists; no import circle");
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// What the maps name that does not exist, one line each.
fn missing_names(root: &Path) -> Result<Vec<String>, String> {
    let files = project_files(root);
    let sources: String = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .filter_map(|f| fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let defined = definitions(&sources);
    let relative: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(root).ok())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut missing = Vec::new();
    for map in MAPS {
        let text = fs::read_to_string(root.join(map)).map_err(|e| format!("{map}: {e}"))?;
        for span in code_spans(&text) {
            if let Some(why) = missing_name(span, &relative, &defined) {
                missing.push(format!("{map}: `{span}`: {why}"));
            }
        }
    }
    Ok(missing)
}

/// Why `span` names nothing that exists, if it does not.
fn missing_name(span: &str, files: &[String], defined: &Definitions) -> Option<String> {
    const OUTSIDE: [&str; 5] = ["std::", "core::", "alloc::", "target/", "libc::"];
    if span.contains(char::is_whitespace)
        || span.starts_with('/')
        || span.starts_with('-')
        || OUTSIDE.iter().any(|outside| span.starts_with(outside))
        || RUST_TYPES.contains(&span)
    {
        return None;
    }
    if looks_like_path(span) {
        let path = span.trim_end_matches('/');
        let found = files.iter().any(|f| {
            f == path
                || f.ends_with(&format!("/{path}"))
                || f.starts_with(&format!("{path}/"))
                || f.contains(&format!("/{path}/"))
        });
        return (!found && !path.contains('*')).then(|| "no such file or folder".to_string());
    }
    let segments: Vec<&str> = span.split("::").collect();
    if segments.len() == 1 {
        let name = segments[0].trim_end_matches("()");
        return (is_type_name(name) && !defined.types.contains(name)).then(|| "no such type".to_string());
    }
    // A path: each type in it exists, and a function at its end does.
    for (i, segment) in segments.iter().enumerate() {
        let segment = segment.trim_end_matches("()");
        let after_type = i > 0 && is_type_name(segments[i - 1]);
        if is_type_name(segment) && !after_type && !defined.types.contains(segment) {
            return Some(format!("no type {segment}"));
        }
        let last = i + 1 == segments.len();
        if last
            && !is_type_name(segment)
            && segment.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            && !defined.functions.contains(segment)
            && !defined.modules.contains(segment)
        {
            return Some(format!("no function or module {segment}"));
        }
    }
    None
}

/// Types of Rust's own library and of the crates the benchmarks compare with, which the maps
/// may name.
const RUST_TYPES: [&str; 14] = [
    "Arc",
    "Box",
    "Copy",
    "Clone",
    "Display",
    "JITModule",
    "Mutex",
    "Option",
    "Result",
    "Send",
    "String",
    "Sync",
    "Vec",
    "Weak",
];

/// A span that names a file or folder: it has a slash or a file name's extension.
fn looks_like_path(span: &str) -> bool {
    const EXTENSIONS: [&str; 8] = [".rs", ".md", ".toml", ".h", ".c", ".smf", ".svg", ".ld"];
    !span.contains("::") && (span.contains('/') || EXTENSIONS.iter().any(|e| span.ends_with(e)))
}

/// A Rust type's name: an upper-case letter, then letters and digits, some lower case.
fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && name.chars().any(|c| c.is_ascii_lowercase())
}

/// The text between single backticks, outside fenced blocks.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push(inside);
        }
    }
    spans
}

/// The names the project's sources define.
#[derive(Default)]
struct Definitions {
    types: BTreeSet<String>,
    functions: BTreeSet<String>,
    modules: BTreeSet<String>,
}

fn definitions(sources: &str) -> Definitions {
    let mut defined = Definitions::default();
    let mut words =
        sources.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
    let mut previous = "";
    for word in words.by_ref() {
        match previous {
            "struct" | "enum" | "trait" | "type" | "union" => {
                defined.types.insert(word.to_string());
            }
            "fn" => {
                defined.functions.insert(word.to_string());
            }
            "mod" => {
                defined.modules.insert(word.to_string());
            }
            _ => {}
        }
        previous = word;
    }
    // Enum variants and associated items named as paths (`Linking::Process`) are checked
    // through their type only.
    defined
}

/// Every file of the project: what git tracks where git answers, else a walk of the tree.
fn project_files(root: &Path) -> Vec<PathBuf> {
    let listed = std::process::Command::new("git").arg("ls-files").current_dir(root).output();
    if let Some(output) = listed.ok().filter(|o| o.status.success()) {
        return String::from_utf8_lossy(&output.stdout).lines().map(|l| root.join(l)).collect();
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// The import circles between the files of [`CRATES`], each as the files along it.
fn circles(root: &Path) -> Result<Vec<Vec<String>>, String> {
    let mut all = Vec::new();
    for krate in CRATES {
        let src = root.join(krate);
        if !src.is_dir() {
            return Err(format!("{krate}: not a folder"));
        }
        let modules = module_files(&src);
        let graph = import_graph(&src, &modules);
        for circle in strongly_connected(&graph) {
            all.push(circle.iter().map(|m| format!("{krate}/{}", modules[m].display())).collect());
        }
    }
    Ok(all)
}

/// Module path (`a::b`, the root `""`) to its file, relative to `src`; test files and the
/// binaries under `bin/` (crates of their own) left out.
fn module_files(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let Ok(relative) = file.strip_prefix(src) else { continue };
        let text = relative.to_string_lossy();
        let Some(stem) = text.strip_suffix(".rs") else { continue };
        if stem.ends_with("tests") || stem.contains("tests/") || stem.starts_with("bin/") {
            continue;
        }
        let stem = stem.strip_suffix("/mod").unwrap_or(stem);
        let path = match stem {
            "lib" | "main" => String::new(),
            _ => stem.replace('/', "::"),
        };
        modules.insert(path, relative.to_path_buf());
    }
    modules
}

/// Edges from each module to the modules its code names (enclosing modules left out).
fn import_graph(src: &Path, modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, file) in modules {
        let text = fs::read_to_string(src.join(file)).unwrap_or_default();
        graph.insert(module.clone(), edges_of(module, &without_tests_and_comments(&text), modules));
    }
    graph
}

/// The modules `code` (of `module`) names, but itself and the modules enclosing it.
fn edges_of(module: &str, code: &str, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut edges = BTreeSet::new();
    for path in named_paths(code) {
        if let Some(target) = resolve(module, &path, modules) {
            let enclosing = module.starts_with(&target)
                && (target.is_empty() || module[target.len()..].starts_with("::"));
            if target != module && !enclosing {
                edges.insert(target);
            }
        }
    }
    edges
}

/// The code of `text` without comments, string literals' contents and `#[cfg(test)]` modules.
fn without_tests_and_comments(text: &str) -> String {
    let mut code = String::new();
    let mut skipping_tests = None;
    let mut depth: i64 = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let test_only = trimmed.starts_with("#[cfg(")
            && trimmed.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word == "test");
        if test_only
            && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod ") && next.contains('{'))
        {
            skipping_tests = Some(depth);
            continue;
        }
        let line = line.split("//").next().unwrap_or("");
        let opened = line.matches('{').count() as i64 - line.matches('}').count() as i64;
        if let Some(at) = skipping_tests {
            depth += opened;
            if depth <= at && line.contains('}') {
                skipping_tests = None;
            }
            continue;
        }
        depth += opened;
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Every path of two segments or more in `code`, as its segments (a `use` tree expanded).
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        if let Some(tree) =
            statement.strip_prefix("use ").or_else(|| statement.split_once(" use ").map(|(_, t)| t))
        {
            expand(&[], tree.trim(), &mut paths);
        }
    }
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == '_')
            && (i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':'));
        if starts {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == '_' || bytes[j] == ':')
            {
                j += 1;
            }
            let word: String = bytes[i..j].iter().collect();
            if word.contains("::") {
                paths.push(word.split("::").filter(|s| !s.is_empty()).map(String::from).collect());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    paths
}

/// The paths of a `use` tree under `prefix`.
fn expand(prefix: &[String], tree: &str, paths: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> =
            tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        let inner = tree[open + 1..].strip_suffix('}').unwrap_or(&tree[open + 1..]);
        let mut depth = 0;
        let mut start = 0;
        let whole: Vec<String> = prefix.iter().cloned().chain(head).collect();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&whole, &inner[start..i], paths);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&whole, &inner[start..], paths);
    } else {
        let item = tree.split(" as ").next().unwrap_or(tree);
        let mut path: Vec<String> = prefix.to_vec();
        path.extend(
            item.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                .map(String::from),
        );
        if !path.is_empty() {
            paths.push(path);
        }
    }
}

/// The deepest module file a path from `module` names, if it names one of the crate's.
fn resolve(module: &str, path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let here: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    let (mut base, rest): (Vec<&str>, &[String]) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (here.clone(), &path[1..]),
        "super" => {
            let mut base = here.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            (base, rest)
        }
        first => {
            // A child module of this one, named directly.
            let mut child = here.clone();
            child.push(first);
            if !modules.contains_key(&child.join("::")) {
                return None;
            }
            (here.clone(), path)
        }
    };
    let mut found = modules.contains_key(&base.join("::")).then(|| base.join("::"));
    for segment in rest {
        base.push(segment);
        let key = base.join("::");
        if modules.contains_key(&key) {
            found = Some(key);
        } else {
            break;
        }
    }
    found
}

/// The strongly connected components of more than one module (the circles).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative over the nodes, recursive over the (shallow) module graph.
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        state.index.insert(node, state.next);
        state.low.insert(node, state.next);
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.graph.contains_key(next) {
                continue;
            }
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.to_string());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.reverse();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maps_name_only_what_exists() {
        let missing = missing_names(&workspace_root()).unwrap();
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn no_file_imports_a_file_that_imports_it_back() {
        let circles = circles(&workspace_root()).unwrap();
        assert!(circles.is_empty(), "{circles:?}");
    }

    #[test]
    fn a_circle_through_use_paths_and_child_names_is_found() {
        let modules: BTreeMap<String, PathBuf> = ["", "a", "b", "a::inner"]
            .iter()
            .map(|m| (m.to_string(), PathBuf::from(format!("{m}.rs"))))
            .collect();
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("", "mod a; mod b; use a::Thing;"),
            ("a", "use crate::b::{Thing, other};\nfn f() { inner::g(); }"),
            ("b", "fn f() { crate::a::inner::g(); }"),
            ("a::inner", "use super::Parent;\nfn g() { super::super::b::h(); }"),
        ]
        .iter()
        .map(|(m, code)| (m.to_string(), edges_of(m, code, &modules)))
        .collect();
        assert_eq!(graph[""], BTreeSet::from(["a".to_string()]), "a child named directly");
        assert_eq!(graph["a"], BTreeSet::from(["a::inner".to_string(), "b".to_string()]));
        assert_eq!(graph["a::inner"], BTreeSet::from(["b".to_string()]), "its enclosing module is no edge");
        let circles = strongly_connected(&graph);
        assert_eq!(circles.len(), 1, "{circles:?}");
        let mut circle = circles[0].clone();
        circle.sort();
        assert_eq!(circle, ["a::inner", "b"]);
    }

    #[test]
    fn a_missing_file_type_or_function_is_named() {
        let files = vec!["shell/src/loader/request.rs".to_string()];
        let defined = definitions("pub struct LoadRequest; pub fn load() {} fn path() {} mod loader;");
        assert_eq!(missing_name("shell/src/loader/request.rs", &files, &defined), None);
        assert_eq!(missing_name("loader/request.rs", &files, &defined), None);
        assert_eq!(missing_name("loader/", &files, &defined), None);
        assert!(missing_name("loader/gone.rs", &files, &defined).is_some());
        assert_eq!(missing_name("loader::load", &files, &defined), None);
        assert!(missing_name("loader::load_path_with", &files, &defined).is_some());
        assert!(missing_name("LoadOptionz", &files, &defined).is_some());
        assert_eq!(missing_name("LoadRequest::path", &files, &defined), None);
        assert_eq!(missing_name("SMF_ALLOW_RWX=1", &files, &defined), None);
    }
}
